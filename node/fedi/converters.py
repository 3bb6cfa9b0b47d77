"""Models <-> ActivityStreams dicts. Both directions return plain data; services save.

**Outgoing** events follow FEP-8a8e and carry what the event platforms read (see
tests/fediverse/fixtures/README.md for where each rule comes from):

- Mobilizon (lib/federation/activity_stream/converter/event.ex): ``timezone``, ``joinMode``,
  ``ical:status`` *and* ``status``, ``category`` from its own upper-case list, ``Place`` with a
  ``PostalAddress`` and ``latitude``/``longitude``, the online address as a ``Link`` named
  ``Website``, accessibility as ``PropertyValue`` attachments with its ``mz:accessibility:*`` keys;
- Gancio (server/federation/events.js) takes the *first* attachment as the event's image, so the image
  ``Document`` always comes first;
- Mastodon converts non-Note objects (``Event`` is in its ``CONVERTED_TYPES``) into a status made of
  ``<h2>name</h2>``, the ``summary`` and a link to ``url`` -- it never shows ``content``, ``startTime``
  or ``location`` -- plus the image attachments. So ``summary`` carries the date, the place and the
  start of the description, and ``url`` is the event page on this node (same host as the actor,
  which Mastodon requires).

What no one carries yet (recurrence, room, our own category and accessibility keys) goes in the
``halles:`` namespace, so two Halles nodes lose nothing.

**Incoming** parsing is lenient about shapes where the real platforms differ (single or list
``location``, a string or ``PostalAddress`` address, ``VirtualLocation``, offset-only times with or
without milliseconds, ``ical:status`` or ``status``, Mobilizon metadata, Gancio's online ``Link``
attachments) and strict where safety needs it: the id must be an http(s) URL, only http(s) URLs are
kept for links and images, numbers are range-checked and every text is cut to its column's size.
Fields we do not map are not lost: the caller stores the whole object (``Event.remote_object``)."""

from __future__ import annotations

import mimetypes
import re
from datetime import UTC, datetime, timedelta
from html import escape, unescape
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

AS_CONTEXT = "https://www.w3.org/ns/activitystreams"
DATA_INTEGRITY_CONTEXT = "https://w3id.org/security/data-integrity/v2"
HALLES_NS = "https://halles.tiers-lieux.org/ns#"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
PUBLIC_ALIASES = {PUBLIC, "as:Public", "Public"}

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
        "propertyID": "sc:propertyID",
        "address": {"@id": "sc:address", "@type": "@id"},
        "streetAddress": "sc:streetAddress",
        "postalCode": "sc:postalCode",
        "addressLocality": "sc:addressLocality",
        "addressCountry": "sc:addressCountry",
        "timezone": {"@id": "mz:timezone", "@type": "sc:Text"},
        "joinMode": {"@id": "mz:joinMode", "@type": "mz:joinModeType"},
        "externalParticipationUrl": {"@id": "mz:externalParticipationUrl", "@type": "sc:URL"},
        "category": "sc:category",
        "inLanguage": "sc:inLanguage",
        "isOnline": {"@id": "mz:isOnline", "@type": "sc:Boolean"},
        "maximumAttendeeCapacity": "sc:maximumAttendeeCapacity",
        "remainingAttendeeCapacity": "sc:remainingAttendeeCapacity",
        "isAccessibleForFree": "sc:isAccessibleForFree",
        "status": "ical:status",
        "hallesCategory": "halles:category",
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

#: Halles categories (node/events/models.py CATEGORIES) -> Mobilizon's upper-case category ids. Mobilizon
#: replaces any id it does not know by MEETING, so only its own ids are worth sending in ``category``.
CATEGORY_TO_MOBILIZON = {
    "debate": "MOVEMENTS_POLITICS",
    "workshop": "LEARNING",
    "screening": "FILM_MEDIA",
    "festival": "PARTY",
    "open_day": "COMMUNITY",
    "meeting": "MEETING",
    "exhibition": "PERFORMING_VISUAL_ARTS",
    "concert": "MUSIC",
    "training": "LEARNING",
    "other": "MEETING",
}
#: Mobilizon ids -> the nearest Halles category (ids not listed become "other").
MOBILIZON_TO_CATEGORY = {
    "MOVEMENTS_POLITICS": "debate",
    "CAUSES": "debate",
    "LEARNING": "workshop",
    "CRAFTS": "workshop",
    "FILM_MEDIA": "screening",
    "PARTY": "festival",
    "COMMUNITY": "open_day",
    "MEETING": "meeting",
    "NETWORKING": "meeting",
    "BUSINESS": "meeting",
    "PERFORMING_VISUAL_ARTS": "exhibition",
    "ARTS": "exhibition",
    "PHOTOGRAPHY": "exhibition",
    "MUSIC": "concert",
    "THEATRE": "other",
}
HALLES_CATEGORIES = frozenset(CATEGORY_TO_MOBILIZON)

#: Accessibility features as PropertyValue names (what people read), both ways.
ACCESSIBILITY_LABELS = {
    "step_free": "Accessible en fauteuil roulant",
    "sign_language": "Interprétation en langue des signes",
    "hearing_loop": "Boucle magnétique",
    "easy_to_read": "Facile à lire et à comprendre",
    "quiet_room": "Espace calme",
    "audio_description": "Audiodescription",
    "accessible_toilets": "Toilettes accessibles",
}
#: Mobilizon's metadata keys (js/src/services/EventMetadata.ts) for the features both sides know, and
#: the value that means "yes". Wheelchair access is a choice no/partially/fully: only "fully" is step-free.
MOBILIZON_ACCESSIBILITY = {
    "step_free": ("mz:accessibility:wheelchairAccessible", "fully"),
    "sign_language": ("mz:accessibility:live:sign_language", True),
}
HALLES_ACCESSIBILITY_PREFIX = "halles:accessibility:"
#: Mobilizon metadata whose value is a URL where the event is followed online.
MOBILIZON_ONLINE_PREFIXES = ("mz:visio:", "mz:live:")

STATUS_TO_ICAL = {"confirmed": "CONFIRMED", "tentative": "TENTATIVE", "cancelled": "CANCELLED"}
ICAL_TO_STATUS = {v: k for k, v in STATUS_TO_ICAL.items()}
#: The name Mobilizon gives the online address ``Link`` and its banner ``Document``.
ONLINE_LINK_NAME = "Website"

# Column sizes of node/events/models.py Event: remote text is cut to them, never refused for length.
TITLE_MAX, PLACE_MAX, ADDRESS_MAX, POSTAL_MAX, CITY_MAX, URL_MAX = 300, 200, 300, 20, 120, 500
DESCRIPTION_MAX = 100_000
MAX_TAGS, TAG_MAX = 30, 60
DEFAULT_DURATION = timedelta(hours=2)
#: Years an event may be dated in; anything else is a broken or hostile date.
MIN_YEAR, MAX_YEAR = 1900, 2999


# --- outgoing -------------------------------------------------------------------------------------


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _iso_local(value: datetime, timezone: str) -> str:
    return _aware(value).astimezone(ZoneInfo(timezone)).isoformat()


def _iso_utc(value: datetime) -> str:
    """UTC with Z; sub-second digits kept when present, so two edits in one second stay ordered."""
    aware = _aware(value).astimezone(UTC)
    if aware.microsecond:
        return aware.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return aware.strftime("%Y-%m-%dT%H:%M:%SZ")


FR_DAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
FR_MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
             "octobre", "novembre", "décembre")
EN_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
EN_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
             "October", "November", "December")


def _day(value: datetime, french: bool) -> str:
    if french:
        return f"{FR_DAYS[value.weekday()]} {value.day} {FR_MONTHS[value.month - 1]} {value.year}"
    return f"{EN_DAYS[value.weekday()]} {value.day} {EN_MONTHS[value.month - 1]} {value.year}"


def when_text(starts_at: datetime, ends_at: datetime, timezone: str, language: str = "fr") -> str:
    """"samedi 14 juin 2025, 18:30–20:30 (Europe/Paris)": the line Mastodon readers see in ``summary``."""
    tz = ZoneInfo(timezone)
    start, end = _aware(starts_at).astimezone(tz), _aware(ends_at).astimezone(tz)
    french = (language or "fr").lower().startswith("fr")
    if start.date() == end.date():
        text = f"{_day(start, french)}, {start:%H:%M}–{end:%H:%M}"
    else:
        text = f"{_day(start, french)} {start:%H:%M} – {_day(end, french)} {end:%H:%M}"
    return f"{text} ({timezone})"


def _where_text(event: Any) -> str:
    if event.location_kind == "online":
        return "En ligne" if (event.language or "fr").startswith("fr") else "Online"
    locality = " ".join(part for part in (event.postal_code, event.city) if part)
    parts = [event.place_name, event.address if event.address != event.place_name else "", locality]
    return ", ".join(part for part in parts if part)


def _excerpt(text: str, limit: int = 280) -> str:
    first = next((block.strip() for block in (text or "").split("\n\n") if block.strip()), "")
    first = " ".join(first.split())
    return first if len(first) <= limit else first[: limit - 1].rsplit(" ", 1)[0] + "…"


def event_summary(event: Any) -> str:
    """HTML for ``summary``: when, where, and the first lines of the description (Mastodon shows this)."""
    language = event.language or "fr"
    lines = [when_text(event.starts_at, event.ends_at, event.timezone, language)]
    where = _where_text(event)
    if where:
        lines.append(where)
    if event.status == "cancelled":
        lines.insert(0, "ANNULÉ" if language.startswith("fr") else "CANCELLED")
    html = "<p>" + "<br>".join(escape(line) for line in lines) + "</p>"
    excerpt = _excerpt(event.description)
    if excerpt:
        html += f"<p>{escape(excerpt)}</p>"
    return html


def image_media_type(url: str) -> str | None:
    """The image type guessed from the URL's extension; None when unknown (receivers then sniff it)."""
    guessed, _ = mimetypes.guess_type(urlsplit(url).path)
    return guessed if guessed and guessed.startswith("image/") else None


def _accessibility_attachments(features: dict[str, bool]) -> list[dict[str, Any]]:
    attachments = []
    for key in sorted(k for k, v in (features or {}).items() if v):
        if key in MOBILIZON_ACCESSIBILITY:
            property_id, value = MOBILIZON_ACCESSIBILITY[key]
            attachments.append({"type": "PropertyValue", "propertyID": property_id, "value": value})
        else:
            attachments.append({"type": "PropertyValue", "propertyID": HALLES_ACCESSIBILITY_PREFIX + key,
                                "name": ACCESSIBILITY_LABELS.get(key, key), "value": True})
    return attachments


def event_to_object(event: Any, *, actor_url: str, followers_url: str, remaining: int | None = None) -> dict:
    """A local Event model -> an AS2 ``Event`` (unsigned)."""
    audience_public = event.visibility == "public"
    category = event.category if event.category in HALLES_CATEGORIES else "other"
    ical_status = STATUS_TO_ICAL.get(event.status, "CONFIRMED")
    obj: dict[str, Any] = {
        "@context": EVENT_CONTEXT,
        "id": event.ap_id,
        "type": "Event",
        # The event page on this node: Mastodon links it, and drops a url of another host than the actor.
        "url": event.ap_id,
        "attributedTo": actor_url,
        "name": event.title,
        "summary": event_summary(event),
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
        "category": CATEGORY_TO_MOBILIZON[category],
        "hallesCategory": category,
        "tag": [{"type": "Hashtag", "name": f"#{tag}"} for tag in (event.tags or [])],
        "inLanguage": event.language,
        # Registration happens on the origin node's page, so Mobilizon shows an "external" join link.
        "joinMode": "external",
        "externalParticipationUrl": f"{event.ap_id}#register",
        # Mobilizon 4 reads "status" first and "ical:status" as the fallback; it sends both itself.
        "ical:status": ical_status,
        "status": ical_status,
        "isOnline": event.location_kind == "online",
        "isAccessibleForFree": (event.price_cents or 0) == 0,
        "price": event.price_cents or 0,
        "visibility": event.visibility,
        "accessibility": sorted(k for k, v in (event.accessibility or {}).items() if v),
        "attachment": [],
        "organisers": [],
        "registrationUrl": f"{event.ap_id}#register",
    }
    if event.capacity is not None:
        obj["maximumAttendeeCapacity"] = event.capacity
        if remaining is not None:
            obj["remainingAttendeeCapacity"] = remaining
    if event.rrule:
        obj["recurrence"] = event.rrule
        if event.exdates:
            obj["exceptionDates"] = list(event.exdates)
    if event.image_url:
        # First attachment: Gancio takes attachment[0] as the image, Mobilizon the first Document (or the
        # one named "Banner"), Mastodon every image attachment (``name`` is its alt text).
        image: dict[str, Any] = {"type": "Document", "url": event.image_url, "name": event.title}
        media_type = image_media_type(event.image_url)
        if media_type:
            image["mediaType"] = media_type
        obj["attachment"].append(image)
        obj["image"] = {"type": "Image", "url": event.image_url, **({"mediaType": media_type} if media_type else {})}
    if event.location_kind == "online" and event.online_url:
        obj["attachment"].append(
            {"type": "Link", "href": event.online_url, "mediaType": "text/html", "name": ONLINE_LINK_NAME})
    obj["attachment"].extend(_accessibility_attachments(event.accessibility))
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
    return obj


def _paragraphs(text: str) -> str:
    blocks = [b.strip() for b in (text or "").split("\n\n") if b.strip()]
    return "".join(f"<p>{escape(b).replace(chr(10), '<br>')}</p>" for b in blocks)


# --- incoming -------------------------------------------------------------------------------------


class ConversionError(ValueError):
    """The remote object cannot become an event; the message says why."""


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _types(value: Any) -> set[str]:
    return {t for t in _as_list(value) if isinstance(t, str)}


#: Any character ``str.isspace`` calls white space (re's Unicode ``\s`` is the same test).
_WHITESPACE = re.compile(r"\s")
#: The common shape (lower-case scheme, an ASCII host name, an optional port): ``urlsplit`` would find
#: an http(s) scheme and a host in it, so it is not asked (its cost is most of this function's).
_PLAIN_HTTP_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]*)?(?:[/?#]\S*)?\Z")


def is_http_url(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > URL_MAX or _WHITESPACE.search(value):
        return False
    if _PLAIN_HTTP_URL.match(value):
        return True
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _text(value: Any, limit: int) -> str:
    """A plain string field, or "" for anything else (numbers, objects, null)."""
    if isinstance(value, str):
        return value.strip()[:limit]
    return ""


def _localized(obj: dict[str, Any], key: str) -> str | None:
    """``name`` or the first value of ``nameMap`` (language maps, as Mastodon reads them)."""
    value = obj.get(key)
    if isinstance(value, str) and value.strip():
        return value
    mapped = obj.get(f"{key}Map")
    if isinstance(mapped, dict):
        for text in mapped.values():
            if isinstance(text, str) and text.strip():
                return text
    return None


def parse_time(value: Any, field: str) -> datetime:
    """ISO 8601 -> naive UTC. Accepts Z or an offset, with or without fractions of a second (Gancio sends
    luxon's ``2025-06-14T18:30:00.000+02:00``); a time without any zone is read as UTC."""
    if isinstance(value, str):
        text = value.strip()
        if text[-1:] in ("Z", "z"):
            # A UTC time (every ``updated`` and ``published`` of most servers): the naive time is the text
            # without its Z, as ``parse_aware`` then ``to_naive_utc`` give it (a conversion costs more than
            # the parse). Anything else takes the full path, which also words the errors.
            try:
                parsed = datetime.fromisoformat(text[:-1])
            except ValueError:
                parsed = None
            if parsed is not None and parsed.tzinfo is None and MIN_YEAR <= parsed.year <= MAX_YEAR:
                return parsed
    return to_naive_utc(parse_aware(value, field))


def parse_aware(value: Any, field: str) -> datetime:
    if not isinstance(value, str) or not value.strip():
        raise ConversionError(f"{field} is missing or not a string")
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ConversionError(f"{field} {value[:60]!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        # A floating time cannot be placed on the timeline without a zone; UTC is the least-wrong guess.
        parsed = parsed.replace(tzinfo=UTC)
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        # Also keeps UTC conversion and the default duration clear of datetime's limits (year 1, 9999).
        raise ConversionError(f"{field} {value[:60]!r} is out of range ({MIN_YEAR}-{MAX_YEAR})")
    return parsed


def to_naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def _valid_zone(name: Any) -> str | None:
    if not isinstance(name, str) or not name or len(name) > 64:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def zone_for_offset(value: datetime) -> str:
    """A time with only an offset (Gancio, Fedify) has no IANA zone; ``Etc/GMT-2`` is the zone that is
    always UTC+2 (POSIX signs are inverted), which shows the event at the local time it was announced."""
    offset = value.utcoffset()
    if offset is None or offset == timedelta(0):
        return "UTC"
    seconds = int(offset.total_seconds())
    if seconds % 3600 or abs(seconds) > 14 * 3600:
        return "UTC"
    hours = seconds // 3600
    return f"Etc/GMT{-hours:+d}"


def _status(obj: dict[str, Any]) -> str:
    for key in ("ical:status", "status", "eventStatus"):
        raw = obj.get(key)
        if isinstance(raw, str) and raw.strip():
            text = raw.strip().upper().rsplit("/", 1)[-1]  # schema.org's https://schema.org/EventCancelled
            if text in ICAL_TO_STATUS:
                return ICAL_TO_STATUS[text]
            if "CANCEL" in text:
                return "cancelled"
            if "TENTATIVE" in text or "POSTPONED" in text:
                return "tentative"
            return "confirmed"
    return "confirmed"


def _category(obj: dict[str, Any]) -> str:
    own = obj.get("hallesCategory") or obj.get("halles:category")
    if isinstance(own, str) and own in HALLES_CATEGORIES:
        return own
    for raw in _as_list(obj.get("category")):
        if not isinstance(raw, str):
            continue
        if raw.lower() in HALLES_CATEGORIES:
            return raw.lower()
        if raw.upper() in MOBILIZON_TO_CATEGORY:
            return MOBILIZON_TO_CATEGORY[raw.upper()]
    return "other"


_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*")


def _language(obj: dict[str, Any]) -> str:
    raw = obj.get("inLanguage")
    if isinstance(raw, dict):
        raw = raw.get("identifier") or raw.get("name")
    if not isinstance(raw, str) or not raw:
        content_map = obj.get("contentMap") or obj.get("nameMap")
        raw = next(iter(content_map), None) if isinstance(content_map, dict) and content_map else None
    if isinstance(raw, str) and _LANGUAGE_TAG.fullmatch(raw):
        return raw[:10].lower()
    return "fr"


def _tags(obj: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for tag in _as_list(obj.get("tag")):
        name = tag.get("name") if isinstance(tag, dict) and "Hashtag" in _types(tag.get("type")) else tag
        if isinstance(name, str):
            clean = name.strip().lstrip("#").strip()[:TAG_MAX]
            if clean and clean not in found:
                found.append(clean)
    return found[:MAX_TAGS]


_LINE_BREAK = re.compile(r"<br\s*/?>", re.I)
_BLOCK_END = re.compile(r"</(p|div|li|h[1-6])\s*>", re.I)
_TAG = re.compile(r"<[^>]*>")
_TRAILING_BLANKS = re.compile(r"[ \t]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")


def _strip_html(html: str) -> str:
    text = _LINE_BREAK.sub("\n", html or "")
    text = _BLOCK_END.sub("\n\n", text)
    text = _TAG.sub("", text)
    text = unescape(text)
    text = _TRAILING_BLANKS.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def _description(obj: dict[str, Any]) -> str:
    source = obj.get("source")
    if isinstance(source, dict) and isinstance(source.get("content"), str):
        media_type = str(source.get("mediaType") or "text/plain")
        if media_type.startswith(("text/plain", "text/markdown")):
            return source["content"][:DESCRIPTION_MAX]
    content = _localized(obj, "content") or ""
    return _strip_html(content[: DESCRIPTION_MAX * 2])[:DESCRIPTION_MAX]


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10_000_000 else None


def _href(value: Any, media_type: str | None = None) -> str | None:
    """A URL from a string, a Link, or a list of them (preferring ``media_type`` when given)."""
    candidates = _as_list(value)
    if media_type:
        preferred = [c for c in candidates
                     if isinstance(c, dict) and str(c.get("mediaType", "")).startswith(media_type)]
        candidates = preferred + [c for c in candidates if c not in preferred]
    for candidate in candidates:
        if isinstance(candidate, dict):
            candidate = candidate.get("href") or candidate.get("url")
            if isinstance(candidate, list | dict):
                candidate = _href(candidate)
        if is_http_url(candidate):
            return candidate
    return None


def _registration_url(obj: dict[str, Any]) -> str | None:
    for key in ("registrationUrl", "externalParticipationUrl"):
        url = _href(obj.get(key))
        if url:
            return url
    return _href(obj.get("url"), "text/html")


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    return isinstance(value, str) and value.strip().lower() in ("true", "yes", "oui", "1", "fully")


_ACCESSIBILITY_BY_LABEL = {label.lower(): key for key, label in ACCESSIBILITY_LABELS.items()}
_ACCESSIBILITY_BY_MOBILIZON = {property_id: (key, yes) for key, (property_id, yes) in MOBILIZON_ACCESSIBILITY.items()}


def _accessibility(obj: dict[str, Any]) -> dict[str, bool]:
    known = ACCESSIBILITY_LABELS
    features: dict[str, bool] = {}
    for key in _as_list(obj.get("accessibility")):
        if isinstance(key, str) and key in known:
            features[key] = True
    by_label = _ACCESSIBILITY_BY_LABEL
    by_mobilizon = _ACCESSIBILITY_BY_MOBILIZON
    for item in _as_list(obj.get("attachment")):
        if not isinstance(item, dict) or "PropertyValue" not in _types(item.get("type")):
            continue
        property_id, value = item.get("propertyID"), item.get("value")
        if not isinstance(property_id, str):
            property_id = None
        if property_id in by_mobilizon:
            key, yes = by_mobilizon[property_id]
            if value == yes or (yes is True and _truthy(value)):
                features[key] = True
            continue
        if property_id and property_id.startswith(HALLES_ACCESSIBILITY_PREFIX):
            key = property_id.removeprefix(HALLES_ACCESSIBILITY_PREFIX)
        elif property_id in known:
            key = property_id
        else:
            key = by_label.get(str(item.get("name", "")).strip().lower())
        if key in known and _truthy(value):
            features[key] = True
    return features


def _number(value: Any, low: float, high: float) -> float | None:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high:
        return float(value)
    return None


def _online_url(obj: dict[str, Any]) -> str | None:
    """Mobilizon names its online address ``Website``; Gancio sends one ``Link`` per online location;
    Mobilizon metadata may carry a video-conference or live URL."""
    links = [a for a in _as_list(obj.get("attachment")) if isinstance(a, dict) and "Link" in _types(a.get("type"))]
    named = [a for a in links if a.get("name") == ONLINE_LINK_NAME]
    for link in named + links:
        if is_http_url(link.get("href")) and str(link.get("mediaType") or "text/html").startswith("text/html"):
            return link["href"]
    for item in _as_list(obj.get("attachment")):
        if (isinstance(item, dict) and isinstance(item.get("propertyID"), str)
                and item["propertyID"].startswith(MOBILIZON_ONLINE_PREFIXES) and is_http_url(item.get("value"))):
            return item["value"]
    return None


def _location(obj: dict[str, Any], fields: dict[str, Any]) -> None:
    fields["online_url"] = _online_url(obj)
    for location in _as_list(obj.get("location")):
        if isinstance(location, str):
            # A bare URL is an address id we will not fetch; any other string is the address itself.
            if not is_http_url(location) and not fields["address"]:
                fields["address"] = location.strip()[:ADDRESS_MAX]
            continue
        if not isinstance(location, dict):
            continue
        kinds = _types(location.get("type"))
        if "VirtualLocation" in kinds:
            fields["online_url"] = fields["online_url"] or _href(location.get("url") or location.get("href"))
            continue
        if fields["place_name"] or fields["address"]:
            continue  # the first physical place wins
        fields["place_name"] = _text(location.get("name"), PLACE_MAX)
        address = location.get("address")
        if isinstance(address, str):
            fields["address"] = address.strip()[:ADDRESS_MAX]
        elif isinstance(address, dict):
            fields["address"] = _text(address.get("streetAddress"), ADDRESS_MAX)
            fields["postal_code"] = _text(address.get("postalCode"), POSTAL_MAX)
            fields["city"] = _text(address.get("addressLocality"), CITY_MAX)
        latitude, longitude = _number(location.get("latitude"), -90, 90), _number(location.get("longitude"), -180, 180)
        if latitude is not None and longitude is not None:
            fields["latitude"], fields["longitude"] = latitude, longitude
    physical = bool(fields["place_name"] or fields["address"])
    if not physical and (fields["online_url"] or obj.get("isOnline") is True):
        fields["location_kind"] = "online"


def _image(obj: dict[str, Any]) -> str | None:
    image = _href(obj.get("image"))
    if image:
        return image
    documents = [
        a for a in _as_list(obj.get("attachment"))
        if isinstance(a, dict) and _types(a.get("type")) & {"Document", "Image"}
        and str(a.get("mediaType") or "image/").startswith("image/")
    ]
    banner = [d for d in documents if d.get("name") == "Banner"]
    for document in banner + documents:
        url = _href(document.get("url"))
        if url:
            return url
    return None


def object_to_event_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """A remote AS2 Event (Halles, Mobilizon, Gancio, Fedify...) -> Event column values.

    Also returns ``updated_at`` (the origin's ``updated``, None when absent) and ``published_at`` for the
    caller's out-of-order check; both are not columns to set blindly."""
    if not isinstance(obj, dict) or "Event" not in _types(obj.get("type")):
        kind = obj.get("type") if isinstance(obj, dict) else type(obj).__name__
        raise ConversionError(f"object type {kind!r} is not an Event")
    ap_id = obj.get("id")
    if not is_http_url(ap_id):
        raise ConversionError("the event has no http(s) id")
    title = _localized(obj, "name") or _strip_html(_localized(obj, "summary") or "")
    if not title.strip():
        raise ConversionError("the event has no name")
    start = parse_aware(obj.get("startTime"), "startTime")
    starts_at = to_naive_utc(start)
    ends_at = None
    if obj.get("endTime"):
        try:
            ends_at = parse_time(obj.get("endTime"), "endTime")
        except ConversionError:
            ends_at = None  # a broken end is not worth losing the event; the default duration applies
    if ends_at is None or ends_at <= starts_at:
        ends_at = starts_at + DEFAULT_DURATION
    timezone = _valid_zone(obj.get("timezone")) or zone_for_offset(start)
    price = obj.get("price")
    fields: dict[str, Any] = {
        "ap_id": ap_id,
        "title": " ".join(title.split())[:TITLE_MAX],
        "description": _description(obj),
        "starts_at": starts_at,
        "ends_at": ends_at,
        "timezone": timezone,
        "status": _status(obj),
        "category": _category(obj),
        "language": _language(obj),
        "tags": _tags(obj),
        "price_cents": price if isinstance(price, int) and not isinstance(price, bool) and 0 <= price < 10**9 else 0,
        "capacity": _positive_int(obj.get("maximumAttendeeCapacity")),
        "visibility": "network" if obj.get("visibility") == "network" else "public",
        "rrule": obj["recurrence"][:500] if isinstance(obj.get("recurrence"), str) else None,
        "exdates": [d[:40] for d in _as_list(obj.get("exceptionDates")) if isinstance(d, str)][:500],
        "registration_url": _registration_url(obj),
        "location_kind": "place",
        "place_name": "",
        "address": "",
        "postal_code": "",
        "city": "",
        "latitude": None,
        "longitude": None,
        "online_url": None,
        "image_url": _image(obj),
        "accessibility": _accessibility(obj),
        "updated_at": _optional_time(obj.get("updated")),
        "published_at": _optional_time(obj.get("published")),
    }
    _location(obj, fields)
    return fields


def _optional_time(value: Any) -> datetime | None:
    """A malformed ``updated``/``published`` is treated as absent rather than refusing the whole event."""
    if not value:
        return None
    try:
        return parse_time(value, "time")
    except ConversionError:
        return None


def is_public(obj: dict[str, Any], activity: dict[str, Any] | None = None) -> bool:
    """Addressed to the public collection (in ``to`` or ``cc``, full IRI or the compact forms)."""
    audience: list[Any] = []
    for holder in (obj, activity or {}):
        audience += _as_list(holder.get("to")) + _as_list(holder.get("cc"))
    ids = (a.get("id") if isinstance(a, dict) else a for a in audience)
    return any(isinstance(i, str) and i in PUBLIC_ALIASES for i in ids)
