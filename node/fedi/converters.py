"""Models <-> ActivityStreams dicts. Both directions return plain data; services save.

Outgoing events follow FEP-8a8e and carry the fields Mobilizon reads (``timezone``, ``joinMode``,
``ical:status``, ``maximumAttendeeCapacity``, ``PostalAddress``, ``PropertyValue`` attachments); see
Mobilizon's lib/federation/activity_stream/converter/event.ex. What no one carries yet (recurrence,
room, accessibility keys) goes in the ``halles:`` namespace. Incoming parsing is lenient about shapes
(single or list ``location``, string addresses, offset-only times) and strict about ids."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

AS_CONTEXT = "https://www.w3.org/ns/activitystreams"
DATA_INTEGRITY_CONTEXT = "https://w3id.org/security/data-integrity/v2"
HALLES_NS = "https://halles.tiers-lieux.org/ns#"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"

#: The JSON-LD context of every object a node publishes.
EVENT_CONTEXT: list[Any] = [
    AS_CONTEXT,
    DATA_INTEGRITY_CONTEXT,
    {
        "sc": "http://schema.org/",
        "mz": "https://joinmobilizon.org/ns#",
        "ical": "http://www.w3.org/2002/12/cal/ical#",
        "halles": HALLES_NS,
        "PostalAddress": "sc:PostalAddress",
        "PropertyValue": "sc:PropertyValue",
        "value": "sc:value",
        "address": {"@id": "sc:address", "@type": "@id"},
        "streetAddress": "sc:streetAddress",
        "postalCode": "sc:postalCode",
        "addressLocality": "sc:addressLocality",
        "addressCountry": "sc:addressCountry",
        "timezone": {"@id": "mz:timezone", "@type": "sc:Text"},
        "joinMode": {"@id": "mz:joinMode", "@type": "mz:joinModeType"},
        "category": "sc:category",
        "inLanguage": "sc:inLanguage",
        "isOnline": {"@id": "mz:isOnline", "@type": "sc:Boolean"},
        "maximumAttendeeCapacity": "sc:maximumAttendeeCapacity",
        "remainingAttendeeCapacity": "sc:remainingAttendeeCapacity",
        "isAccessibleForFree": "sc:isAccessibleForFree",
        "recurrence": "halles:recurrence",
        "exceptionDates": "halles:exceptionDates",
        "room": "halles:room",
        "organisers": {"@id": "halles:organisers", "@type": "@id"},
        "accessibility": "halles:accessibility",
        "visibility": "halles:visibility",
        "price": "halles:priceCents",
        "registrationUrl": {"@id": "halles:registrationUrl", "@type": "@id"},
    },
]

#: Accessibility features as PropertyValue names (what people read in Mobilizon), both ways.
ACCESSIBILITY_LABELS = {
    "step_free": "Accessible en fauteuil roulant",
    "sign_language": "Interprétation en langue des signes",
    "hearing_loop": "Boucle magnétique",
    "easy_to_read": "Facile à lire et à comprendre",
    "quiet_room": "Espace calme",
    "audio_description": "Audiodescription",
    "accessible_toilets": "Toilettes accessibles",
}
STATUS_TO_ICAL = {"confirmed": "CONFIRMED", "tentative": "TENTATIVE", "cancelled": "CANCELLED"}
ICAL_TO_STATUS = {v: k for k, v in STATUS_TO_ICAL.items()}


def _iso_local(value: datetime, timezone: str) -> str:
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return aware.astimezone(ZoneInfo(timezone)).isoformat()


def _iso_utc(value: datetime) -> str:
    """UTC with Z; sub-second digits kept when present, so two edits in one second stay ordered."""
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if aware.microsecond:
        return aware.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return aware.strftime("%Y-%m-%dT%H:%M:%SZ")


def event_to_object(event: Any, *, actor_url: str, followers_url: str, remaining: int | None = None) -> dict:
    """A local Event model -> an AS2 ``Event`` (unsigned)."""
    audience_public = event.visibility == "public"
    obj: dict[str, Any] = {
        "@context": EVENT_CONTEXT,
        "id": event.ap_id,
        "type": "Event",
        "url": event.ap_id,
        "attributedTo": actor_url,
        "name": event.title,
        "content": _paragraphs(event.description),
        "mediaType": "text/html",
        "source": {"content": event.description, "mediaType": "text/plain"},
        "startTime": _iso_local(event.starts_at, event.timezone),
        "endTime": _iso_local(event.ends_at, event.timezone),
        "timezone": event.timezone,
        "published": _iso_utc(event.created_at),
        "updated": _iso_utc(event.updated_at),
        "to": [PUBLIC] if audience_public else [followers_url],
        "cc": [followers_url] if audience_public else [],
        "category": event.category.upper(),
        "tag": [{"type": "Hashtag", "name": f"#{tag}", "href": None} for tag in (event.tags or [])],
        "inLanguage": event.language,
        # Registration happens on the origin node's page, so Mobilizon shows an "external" join link.
        "joinMode": "external",
        "externalParticipationUrl": f"{event.ap_id}#register",
        "ical:status": STATUS_TO_ICAL.get(event.status, "CONFIRMED"),
        "isOnline": event.location_kind == "online",
        "isAccessibleForFree": (event.price_cents or 0) == 0,
        "price": event.price_cents or 0,
        "visibility": event.visibility,
        "accessibility": sorted(k for k, v in (event.accessibility or {}).items() if v),
        "attachment": [
            {"type": "PropertyValue", "name": ACCESSIBILITY_LABELS.get(k, k), "value": "true", "propertyID": k}
            for k, v in sorted((event.accessibility or {}).items())
            if v
        ],
        "organisers": [],
        "registrationUrl": f"{event.ap_id}#register",
    }
    for tag in obj["tag"]:
        tag.pop("href")
    if event.capacity is not None:
        obj["maximumAttendeeCapacity"] = event.capacity
        if remaining is not None:
            obj["remainingAttendeeCapacity"] = remaining
    if event.rrule:
        obj["recurrence"] = event.rrule
        if event.exdates:
            obj["exceptionDates"] = list(event.exdates)
    if event.location_kind == "online" and event.online_url:
        online = {"type": "Link", "href": event.online_url, "mediaType": "text/html", "name": "Website"}
        obj["attachment"].append(online)
    if event.location_kind in ("room", "place") and (event.address or event.place_name):
        place: dict[str, Any] = {
            "type": "Place",
            "name": event.place_name or event.address,
            "address": {
                "type": "PostalAddress",
                "streetAddress": event.address,
                "postalCode": event.postal_code,
                "addressLocality": event.city,
                "addressCountry": "FR",
            },
        }
        if event.latitude is not None and event.longitude is not None:
            place["latitude"] = event.latitude
            place["longitude"] = event.longitude
        obj["location"] = place
    if event.image_url:
        # Mastodon shows the first image attachment of a non-Note object.
        obj["image"] = {"type": "Image", "url": event.image_url, "mediaType": "image/jpeg"}
        obj["attachment"].append({"type": "Document", "mediaType": "image/jpeg", "url": event.image_url,
                                  "name": "Banner"})
    return obj


def _paragraphs(text: str) -> str:
    from html import escape

    blocks = [b.strip() for b in (text or "").split("\n\n") if b.strip()]
    return "".join(f"<p>{escape(b).replace(chr(10), '<br>')}</p>" for b in blocks)


class ConversionError(ValueError):
    """The remote object cannot become an event; the message says why."""


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def parse_time(value: Any, field: str) -> datetime:
    """ISO 8601 with offset or Z -> naive UTC. Gancio sends offset-only times; both are fine."""
    if not isinstance(value, str) or not value:
        raise ConversionError(f"{field} is missing or not a string")
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ConversionError(f"{field} {value!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        # A floating time cannot be placed on the timeline without a zone; UTC is the least-wrong guess.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).replace(tzinfo=None)


def _strip_html(html: str) -> str:
    import re
    from html import unescape

    text = re.sub(r"<br\s*/?>", "\n", html or "", flags=re.I)
    text = re.sub(r"</p\s*>", "\n\n", text, flags=re.I)
    text = re.sub(r"<[^>]+>", "", text)
    return unescape(text).strip()


def object_to_event_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """A remote AS2 Event (Halles, Mobilizon, Gancio, Fedify...) -> Event column values."""
    if obj.get("type") != "Event" and "Event" not in (obj.get("type") or []):
        raise ConversionError(f"object type {obj.get('type')!r} is not an Event")
    ap_id = obj.get("id")
    if not isinstance(ap_id, str) or urlsplit(ap_id).scheme not in ("http", "https"):
        raise ConversionError("the event has no http(s) id")
    title = obj.get("name") or obj.get("summary")
    if not isinstance(title, str) or not title.strip():
        raise ConversionError("the event has no name")
    starts_at = parse_time(obj.get("startTime"), "startTime")
    ends_raw = obj.get("endTime")
    ends_at = parse_time(ends_raw, "endTime") if ends_raw else starts_at.replace()
    if ends_at <= starts_at:
        from datetime import timedelta

        ends_at = starts_at + timedelta(hours=2)
    timezone = obj.get("timezone") if isinstance(obj.get("timezone"), str) else "UTC"
    try:
        ZoneInfo(timezone)
    except (KeyError, ValueError):
        timezone = "UTC"
    status_raw = obj.get("ical:status") or obj.get("status") or "CONFIRMED"
    status = ICAL_TO_STATUS.get(str(status_raw).upper(), "confirmed")
    content = obj.get("source", {}).get("content") if isinstance(obj.get("source"), dict) else None
    description = content if isinstance(content, str) else _strip_html(str(obj.get("content") or ""))
    fields: dict[str, Any] = {
        "ap_id": ap_id,
        "title": title.strip()[:300],
        "description": description,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "timezone": timezone,
        "status": status,
        "category": str(obj.get("category") or "other").lower()[:40],
        "language": str(obj.get("inLanguage") or "fr")[:10],
        "tags": [
            str(t.get("name", "")).lstrip("#")[:60]
            for t in (obj.get("tag") or [])
            if isinstance(t, dict) and t.get("type") == "Hashtag" and t.get("name")
        ],
        "price_cents": int(obj["price"]) if isinstance(obj.get("price"), int) and obj["price"] >= 0 else 0,
        "capacity": _positive_int(obj.get("maximumAttendeeCapacity")),
        "visibility": "network" if obj.get("visibility") == "network" else "public",
        "rrule": obj.get("recurrence") if isinstance(obj.get("recurrence"), str) else None,
        "exdates": [d for d in obj.get("exceptionDates") or [] if isinstance(d, str)],
        "registration_url": _registration_url(obj),
        "location_kind": "place",
        "place_name": "",
        "address": "",
        "postal_code": "",
        "city": "",
        "latitude": None,
        "longitude": None,
        "online_url": None,
        "image_url": None,
        "updated_at": parse_time(obj["updated"], "updated") if obj.get("updated") else None,
    }
    fields["accessibility"] = _accessibility(obj)
    _location(obj, fields)
    image = _first(obj.get("image"))
    if isinstance(image, dict):
        image = _first(image.get("url"))
        if isinstance(image, dict):
            image = image.get("href")
    if isinstance(image, str) and image.startswith(("http://", "https://")):
        fields["image_url"] = image[:500]
    return fields


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _registration_url(obj: dict[str, Any]) -> str | None:
    for key in ("registrationUrl", "externalParticipationUrl", "url"):
        value = _first(obj.get(key))
        if isinstance(value, dict):
            value = value.get("href")
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            return value[:500]
    return None


def _accessibility(obj: dict[str, Any]) -> dict[str, bool]:
    features = {}
    known = set(ACCESSIBILITY_LABELS)
    for key in obj.get("accessibility") or []:
        if key in known:
            features[key] = True
    by_label = {label.lower(): key for key, label in ACCESSIBILITY_LABELS.items()}
    for item in obj.get("attachment") or []:
        if isinstance(item, dict) and item.get("type") == "PropertyValue":
            key = item.get("propertyID")
            if key not in known:
                key = by_label.get(str(item.get("name", "")).lower())
            if key and str(item.get("value", "")).lower() in ("true", "yes", "oui", "1"):
                features[key] = True
    return features


def _location(obj: dict[str, Any], fields: dict[str, Any]) -> None:
    locations = obj.get("location")
    if not isinstance(locations, list):
        locations = [locations] if locations else []
    for attachment in obj.get("attachment") or []:
        if isinstance(attachment, dict) and attachment.get("type") == "Link" and attachment.get("name") == "Website":
            fields["online_url"] = attachment.get("href")
    for location in locations:
        if isinstance(location, str):
            fields["address"] = location[:300]
            continue
        if not isinstance(location, dict):
            continue
        if location.get("type") == "VirtualLocation":
            fields["online_url"] = location.get("url") or fields["online_url"]
            continue
        fields["place_name"] = str(location.get("name") or "")[:200]
        address = location.get("address")
        if isinstance(address, str):
            fields["address"] = address[:300]
        elif isinstance(address, dict):
            fields["address"] = str(address.get("streetAddress") or "")[:300]
            fields["postal_code"] = str(address.get("postalCode") or "")[:20]
            fields["city"] = str(address.get("addressLocality") or "")[:120]
        for key, column in (("latitude", "latitude"), ("longitude", "longitude")):
            if isinstance(location.get(key), int | float):
                fields[column] = float(location[key])
    if fields["online_url"] and not (fields["address"] or fields["place_name"]):
        fields["location_kind"] = "online"
    elif obj.get("isOnline") is True and not fields["address"]:
        fields["location_kind"] = "online"
