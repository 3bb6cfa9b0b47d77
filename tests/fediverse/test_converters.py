"""The event converter, both ways: what Mastodon, Mobilizon and Gancio read in our events, and what we
read in theirs (lenient about shapes, strict about ids and URLs)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.fedi.converters import (
    ConversionError,
    event_to_object,
    is_public,
    object_to_event_fields,
    when_text,
    zone_for_offset,
)

FIXTURES = Path(__file__).parent / "fixtures"
ACTOR = "https://halles.example/actor"
FOLLOWERS = "https://halles.example/followers"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def local_event(**overrides) -> SimpleNamespace:
    fields = {
        "ap_id": "https://halles.example/events/3d1f",
        "title": "Débat : budget participatif du 20e",
        "description": "Entrée libre, ouvert à toutes et à tous.\n\nGarde d'enfants sur place.",
        "starts_at": datetime(2031, 6, 14, 16, 30),
        "ends_at": datetime(2031, 6, 14, 18, 30),
        "timezone": "Europe/Paris",
        "created_at": datetime(2031, 5, 1, 8, 0),
        "updated_at": datetime(2031, 5, 2, 9, 0, 0, 250000),
        "visibility": "public",
        "category": "debate",
        "tags": ["budget", "20e"],
        "language": "fr",
        "status": "confirmed",
        "location_kind": "place",
        "place_name": "Les Halles Civiques",
        "address": "12 rue de la Chine",
        "postal_code": "75020",
        "city": "Paris",
        "latitude": 48.8686,
        "longitude": 2.4009,
        "online_url": None,
        "image_url": "https://halles.example/media/affiche.png",
        "price_cents": 0,
        "accessibility": {"step_free": True, "sign_language": True, "quiet_room": True, "hearing_loop": False},
        "capacity": 80,
        "rrule": None,
        "exdates": [],
    }
    fields.update(overrides)
    return SimpleNamespace(**fields)


def to_object(event=None, **kwargs) -> dict:
    return event_to_object(event or local_event(), actor_url=ACTOR, followers_url=FOLLOWERS, **kwargs)


# --- outgoing: what each platform reads ------------------------------------------------------------


def test_mastodon_sees_title_summary_link_and_image():
    """Mastodon renders a converted Event as <h2>name</h2> + summary + a link to url, plus image
    attachments; it drops a url on another host than the actor."""
    obj = to_object()
    assert obj["type"] == "Event" and obj["name"] == "Débat : budget participatif du 20e"
    assert obj["url"] == obj["id"] and obj["url"].startswith("https://halles.example/")
    summary = obj["summary"]
    assert "samedi 14 juin 2031, 18:30–20:30 (Europe/Paris)" in summary  # 16:30 UTC in Paris summer time
    assert "Les Halles Civiques, 12 rue de la Chine, 75020 Paris" in summary
    assert "Entrée libre, ouvert à toutes et à tous." in summary and "Garde d" not in summary
    image = obj["attachment"][0]
    assert image == {"type": "Document", "url": "https://halles.example/media/affiche.png",
                     "name": "Débat : budget participatif du 20e", "mediaType": "image/png"}
    assert obj["tag"] == [{"type": "Hashtag", "name": "#budget"}, {"type": "Hashtag", "name": "#20e"}]
    assert obj["to"] == ["https://www.w3.org/ns/activitystreams#Public"] and obj["cc"] == [FOLLOWERS]
    assert obj["published"] == "2031-05-01T08:00:00Z" and obj["updated"] == "2031-05-02T09:00:00.250000Z"


def test_summary_is_escaped_and_says_cancelled():
    obj = to_object(local_event(status="cancelled", place_name="<script>alert(1)</script>",
                                description="<b>gras</b> & co"))
    assert "<script>" not in obj["summary"] and "&lt;script&gt;" in obj["summary"]
    assert obj["summary"].startswith("<p>ANNULÉ<br>")
    assert "&lt;b&gt;gras&lt;/b&gt; &amp; co" in obj["summary"]
    assert obj["content"] == "<p>&lt;b&gt;gras&lt;/b&gt; &amp; co</p>"


def test_mobilizon_fields():
    obj = to_object()
    assert obj["category"] == "MOVEMENTS_POLITICS" and obj["hallesCategory"] == "debate"
    assert obj["ical:status"] == obj["status"] == "CONFIRMED"
    assert obj["timezone"] == "Europe/Paris" and obj["startTime"] == "2031-06-14T18:30:00+02:00"
    assert obj["joinMode"] == "external" and obj["externalParticipationUrl"].endswith("#register")
    assert obj["maximumAttendeeCapacity"] == 80
    assert obj["location"] == {
        "type": "Place", "name": "Les Halles Civiques",
        "address": {"type": "PostalAddress", "streetAddress": "12 rue de la Chine", "postalCode": "75020",
                    "addressLocality": "Paris", "addressCountry": "FR"},
        "latitude": 48.8686, "longitude": 2.4009,
    }
    properties = [a for a in obj["attachment"] if a["type"] == "PropertyValue"]
    assert {"type": "PropertyValue", "propertyID": "mz:accessibility:wheelchairAccessible", "value": "fully"} \
        in properties
    assert {"type": "PropertyValue", "propertyID": "mz:accessibility:live:sign_language", "value": True} \
        in properties
    assert {"type": "PropertyValue", "propertyID": "halles:accessibility:quiet_room", "name": "Espace calme",
            "value": True} in properties
    assert not any("hearing_loop" in str(p) for p in properties)


def test_online_event_carries_mobilizon_website_link_and_no_place():
    obj = to_object(local_event(location_kind="online", online_url="https://visio.example/salle", image_url=None,
                                accessibility={}))
    assert obj["isOnline"] is True and "location" not in obj
    assert obj["attachment"] == [{"type": "Link", "href": "https://visio.example/salle", "mediaType": "text/html",
                                  "name": "Website"}]
    assert "En ligne" in obj["summary"]


def test_unknown_image_type_is_left_for_receivers_to_sniff():
    obj = to_object(local_event(image_url="https://halles.example/media/affiche"))
    assert "mediaType" not in obj["attachment"][0] and "mediaType" not in obj["image"]


def test_halles_round_trip_loses_nothing():
    event = local_event(rrule="FREQ=WEEKLY;COUNT=4", exdates=["2031-06-21T18:30:00"], price_cents=500,
                        visibility="network", category="training")
    fields = object_to_event_fields(to_object(event))
    for key in ("title", "starts_at", "ends_at", "timezone", "category", "tags", "language", "status",
                "place_name", "address", "postal_code", "city", "latitude", "longitude", "image_url",
                "price_cents", "capacity", "visibility", "rrule", "exdates"):
        assert fields[key] == getattr(event, key), key
    assert fields["description"] == event.description
    assert fields["accessibility"] == {"step_free": True, "sign_language": True, "quiet_room": True}
    assert fields["updated_at"] == event.updated_at


def test_when_text_across_days_and_in_english():
    text = when_text(datetime(2031, 12, 31, 21), datetime(2032, 1, 1, 2), "Europe/Paris", "en")
    assert text == "Wednesday 31 December 2031 22:00 – Thursday 1 January 2032 03:00 (Europe/Paris)"


# --- incoming: the platforms' own payloads ---------------------------------------------------------


def test_mobilizon_event():
    fields = object_to_event_fields(fixture("mobilizon_event_create.json")["object"])
    assert fields["title"] == "Repair Café et débat : réparer plutôt que jeter"
    assert fields["starts_at"] == datetime(2031, 6, 14, 15, 0) and fields["ends_at"] == datetime(2031, 6, 14, 19, 0)
    assert fields["timezone"] == "Europe/Paris"
    assert fields["status"] == "confirmed" and fields["category"] == "debate"  # CAUSES
    assert (fields["place_name"], fields["address"], fields["postal_code"], fields["city"]) == (
        "Maison des Métallos", "94 Rue Jean-Pierre Timbaud", "75011", "Paris")
    assert (fields["latitude"], fields["longitude"]) == (48.8672, 2.3785)
    assert fields["accessibility"] == {"step_free": True, "sign_language": True}
    assert fields["image_url"] == "https://mobilizon.example/media/7d0b2c1e9f.jpg"
    assert fields["tags"] == ["reparation", "Belleville"]
    assert fields["capacity"] == 40 and fields["language"] == "fr"
    assert fields["description"].startswith("Apportez vos objets cassés\xa0: des bénévoles")
    assert "droit à la réparation" in fields["description"] and "<strong>" not in fields["description"]
    assert fields["registration_url"] == "https://mobilizon.example/events/8c1a2f6e-4b7d-4f1e-9a55-2f0d7c3b9e41"
    assert fields["updated_at"] == datetime(2031, 5, 21, 16, 3, 10)


def test_gancio_event():
    fields = object_to_event_fields(fixture("gancio_event_create.json")["object"])
    assert fields["starts_at"] == datetime(2031, 6, 21, 17, 30)  # 19:30.000+02:00
    assert fields["timezone"] == "Etc/GMT-2"  # an offset-only time: the zone that is always UTC+2
    assert fields["address"] == "34 rue Daubenton, 75005 Paris" and fields["place_name"] == "La Clef Revival"
    assert fields["location_kind"] == "place"
    assert fields["online_url"] == "https://peertube.example/w/glaneurs-live"
    assert fields["image_url"] == "https://gancio.example/media/5b3f9a0c1d2e.jpg"
    assert fields["tags"] == ["cinema", "prix_libre"]
    assert fields["updated_at"] is None and fields["published_at"] == datetime(2031, 5, 28, 8, 41, 2)
    assert fields["registration_url"] == "https://gancio.example/event/cine-club-les-glaneurs-et-la-glaneuse"


@pytest.mark.parametrize(("location", "expected"), [
    ("12 rue des Vignoles, Paris", {"address": "12 rue des Vignoles, Paris", "location_kind": "place"}),
    ({"type": "VirtualLocation", "url": "https://meet.example/x"},
     {"online_url": "https://meet.example/x", "location_kind": "online"}),
    ([{"type": "VirtualLocation", "url": "https://meet.example/x"},
      {"type": "Place", "name": "Le Shakirail", "address": "72 rue Riquet", "latitude": "48.88", "longitude": "2.36"}],
     {"online_url": "https://meet.example/x", "place_name": "Le Shakirail", "address": "72 rue Riquet",
      "latitude": 48.88, "longitude": 2.36, "location_kind": "place"}),
    ({"type": "Place", "name": "Nulle part", "latitude": 123, "longitude": 2}, {"latitude": None, "longitude": None}),
    ("https://mobilizon.example/address/1", {"address": "", "location_kind": "place"}),
    ({"type": "VirtualLocation", "url": "javascript:alert(1)"}, {"online_url": None}),
])
def test_location_shapes(location, expected):
    obj = {"id": "https://x.example/e/1", "type": "Event", "name": "E", "startTime": "2031-01-01T10:00:00Z",
           "location": location}
    fields = object_to_event_fields(obj)
    for key, value in expected.items():
        assert fields[key] == value, key


def test_lenient_about_times_names_statuses_and_categories():
    obj = {
        "id": "https://x.example/e/1", "type": ["Event", "sc:Event"], "nameMap": {"en": "Open day"},
        "contentMap": {"en": "<p>Come &amp; see</p>"},
        "startTime": "2031-03-01T10:00:00", "endTime": "2031-03-01T09:00:00Z",  # no zone; end before start
        "updated": "not a date", "eventStatus": "https://schema.org/EventCancelled", "category": ["ARTS"],
        "tag": ["#plain", {"type": "Hashtag", "name": "#plain"}, {"type": "Mention", "name": "@bob"}],
        "maximumAttendeeCapacity": 0, "price": -3,
    }
    fields = object_to_event_fields(obj)
    assert fields["title"] == "Open day" and fields["description"] == "Come & see" and fields["language"] == "en"
    assert fields["starts_at"] == datetime(2031, 3, 1, 10) and fields["ends_at"] == datetime(2031, 3, 1, 12)
    assert fields["timezone"] == "UTC" and fields["updated_at"] is None
    assert fields["status"] == "cancelled" and fields["category"] == "exhibition"
    assert fields["tags"] == ["plain"] and fields["capacity"] is None and fields["price_cents"] == 0


@pytest.mark.parametrize(("change", "message"), [
    ({"type": "Note"}, "is not an Event"),
    ({"id": "javascript:alert(1)"}, r"no http\(s\) id"),
    ({"id": None}, r"no http\(s\) id"),
    ({"name": "  ", "summary": None}, "no name"),
    ({"startTime": "demain soir"}, "not an ISO 8601"),
    ({"startTime": None}, "startTime is missing"),
])
def test_strict_about_what_makes_an_event(change, message):
    obj = {"id": "https://x.example/e/1", "type": "Event", "name": "E", "startTime": "2031-01-01T10:00:00Z"}
    obj.update(change)
    with pytest.raises(ConversionError, match=message):
        object_to_event_fields(obj)


def test_mobilizon_external_registration_and_visio_metadata():
    obj = fixture("mobilizon_event_create.json")["object"]
    obj.update({"joinMode": "external", "externalParticipationUrl": "https://billetterie.example/repair",
                "isOnline": True, "location": None})
    obj["attachment"].append({"type": "PropertyValue", "propertyID": "mz:visio:jitsi_meet",
                              "value": "https://meet.jit.si/RepairBelleville"})
    fields = object_to_event_fields(obj)
    assert fields["registration_url"] == "https://billetterie.example/repair"
    assert fields["online_url"] == "https://meet.jit.si/RepairBelleville" and fields["location_kind"] == "online"


def test_strings_are_cut_to_their_columns_and_unsafe_urls_dropped():
    obj = {"id": "https://x.example/e/1", "type": "Event", "name": "N" * 1000, "startTime": "2031-01-01T10:00:00Z",
           "image": "data:image/png;base64,AAAA", "url": "ftp://x.example/e/1",
           "location": {"type": "Place", "name": "P" * 500, "address": {"streetAddress": 42, "postalCode": "7" * 50}},
           "tag": [{"type": "Hashtag", "name": "#" + "t" * 200}], "timezone": "Mars/Olympus_Mons"}
    fields = object_to_event_fields(obj)
    assert len(fields["title"]) == 300 and len(fields["place_name"]) == 200
    assert fields["address"] == "" and len(fields["postal_code"]) == 20 and len(fields["tags"][0]) == 60
    assert fields["image_url"] is None and fields["registration_url"] is None and fields["timezone"] == "UTC"


def test_zone_for_offset():
    assert zone_for_offset(datetime.fromisoformat("2031-01-01T10:00:00-05:00")) == "Etc/GMT+5"
    assert zone_for_offset(datetime.fromisoformat("2031-01-01T10:00:00+05:30")) == "UTC"  # no Etc zone for it
    assert zone_for_offset(datetime.fromisoformat("2031-01-01T10:00:00+00:00")) == "UTC"


def test_is_public_reads_compact_and_full_forms():
    assert is_public({"to": ["as:Public"]}) and is_public({}, {"cc": "https://www.w3.org/ns/activitystreams#Public"})
    assert not is_public({"to": ["https://x.example/followers"]})


def test_dates_out_of_range_are_refused_or_ignored():
    obj = {"id": "https://x.example/e/1", "type": "Event", "name": "E", "startTime": "9999-12-31T23:59:59-14:00"}
    with pytest.raises(ConversionError, match="out of range"):
        object_to_event_fields(obj)
    obj.update(startTime="2031-01-01T10:00:00Z", endTime="0001-01-01T00:00:00+14:00", updated="9999-12-31T23:00:00Z")
    fields = object_to_event_fields(obj)
    assert fields["ends_at"] == datetime(2031, 1, 1, 12) and fields["updated_at"] is None


JSON_LEAVES = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
               | st.sampled_from(["https://x.example/a", "javascript:x", "Place", "VirtualLocation", "PropertyValue",
                                  "Link", "Document", "Hashtag", "2031-01-01T10:00:00+02:00", "fully"]))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda children: st.lists(children, max_size=3) | st.dictionaries(
    st.sampled_from(["type", "id", "name", "url", "href", "address", "latitude", "longitude", "value", "propertyID",
                     "mediaType", "streetAddress", "content"]), children, max_size=4), max_leaves=15)
FIELDS = ["name", "nameMap", "summary", "content", "contentMap", "source", "endTime", "timezone", "location",
          "attachment", "tag", "image", "url", "category", "hallesCategory", "inLanguage", "ical:status", "status",
          "maximumAttendeeCapacity", "price", "recurrence", "exceptionDates", "updated", "published",
          "registrationUrl", "externalParticipationUrl", "accessibility", "isOnline", "visibility"]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=10))
def test_any_json_gives_fields_or_a_conversion_error(extra):
    """Whatever shapes a server sends, the converter answers fields or a ConversionError, never a crash."""
    obj = {"id": "https://x.example/e/1", "type": "Event", "name": "E", "startTime": "2031-01-01T10:00:00Z"} | extra
    try:
        fields = object_to_event_fields(obj)
    except ConversionError:
        return
    assert fields["ends_at"] > fields["starts_at"] and len(fields["title"]) <= 300
