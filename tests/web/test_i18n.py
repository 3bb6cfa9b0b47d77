"""French by default, English on request (kept in the session), dates in each language's format and
in the event's own time zone; the French catalogue is complete and compiled."""

from __future__ import annotations

from pathlib import Path

from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

TRANSLATIONS = Path(__file__).resolve().parents[2] / "node" / "translations"


def test_french_by_default_with_french_dates(client, seeded):
    body = client.get(f"/events/{seeded.events['debate']}").get_data(as_text=True)
    assert '<html lang="fr">' in body
    assert "Infos pratiques" in body and "inscris" in body
    assert " à 19:00" in body  # "samedi 28 novembre 2026 à 19:00"
    assert any(day in body for day in ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"))


def test_language_switch_is_remembered(client, seeded):
    english = client.get("/?lang=en").get_data(as_text=True)
    assert '<html lang="en">' in english and "Across the network" in english
    later = client.get(f"/events/{seeded.events['debate']}").get_data(as_text=True)
    assert '<html lang="en">' in later and "Practical information" in later and ", 19:00" in later
    back = client.get("/events?lang=fr").get_data(as_text=True)
    assert '<html lang="fr">' in back and "Dans le réseau" not in back and "Filtres" in back


def test_switch_links_keep_the_page_and_its_filters(client, seeded):
    body = client.get("/events?city=Paris&accessible=step_free").get_data(as_text=True)
    assert 'href="/events?city=Paris&amp;accessible=step_free&amp;lang=en"' in body


def test_event_time_is_shown_in_the_event_zone(app, client, seeded):
    """An event in Montréal shows Montréal time, even on a Paris node."""
    from datetime import datetime, timedelta

    from node.events import services as events
    from node.extensions import db
    from node.members.services import find_user_by_email

    with app.app_context():
        admin = find_user_by_email(seeded.admin_email)
        day = seeded.today + timedelta(days=12)
        event = events.create_event(admin, {
            "title": "Rencontre transatlantique", "starts_at": datetime(day.year, day.month, day.day, 18, 30),
            "ends_at": datetime(day.year, day.month, day.day, 20), "timezone": "America/Montreal",
            "location_kind": "online", "online_url": "https://visio.example/mtl",
            "organiser_ids": [seeded.org_ids["Démocratie Ouverte"]]})
        db.session.commit()
        uuid = event.uuid
    body = client.get(f"/events/{uuid}").get_data(as_text=True)
    assert "18:30" in body and "20:00" in body and "Est" in body  # heure de l'Est nord-américain


def test_error_pages_are_translated(client):
    french = client.get("/events/nothing-here").get_data(as_text=True)
    assert "existe pas" in french and "mal saisie" in french
    assert '<p class="muted" lang="en">no event nothing-here here' in french  # the service's own words, marked
    assert "This page does not exist" in client.get("/nowhere?lang=en").get_data(as_text=True)


def _read(reader, path: Path):
    with path.open("rb") as handle:
        return reader(handle)


def test_french_catalogue_is_complete_and_compiled():
    template = _read(read_po, TRANSLATIONS / "messages.pot")
    french = _read(read_po, TRANSLATIONS / "fr" / "LC_MESSAGES" / "messages.po")
    compiled = _read(read_mo, TRANSLATIONS / "fr" / "LC_MESSAGES" / "messages.mo")
    ids = {m.id if isinstance(m.id, str) else tuple(m.id) for m in template if m.id}
    translated = {m.id if isinstance(m.id, str) else tuple(m.id): m.string for m in french if m.id}
    assert ids <= set(translated), sorted(map(str, ids - set(translated)))[:10]
    assert all(translated[key] for key in ids)
    assert not any(m.fuzzy for m in french if m.id)
    assert {m.id if isinstance(m.id, str) else tuple(m.id) for m in compiled if m.id} >= ids  # .mo is up to date


def test_templates_use_only_known_messages():
    """Every string the pages use is in the template (a forgotten extraction would show English)."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "check.pot"
        keywords = ["-k", "_l", "-k", "lazy_gettext", "-k", "N_"]
        subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F",
                        str(TRANSLATIONS / "babel.cfg"), *keywords, "-o", str(target), "."],
                       cwd=TRANSLATIONS.parents[1], check=True, capture_output=True)
        fresh = {m.id if isinstance(m.id, str) else tuple(m.id) for m in _read(read_po, target) if m.id}
    known = {m.id if isinstance(m.id, str) else tuple(m.id) for m in _read(read_po, TRANSLATIONS / "messages.pot")
             if m.id}
    assert fresh <= known, sorted(map(str, fresh - known))[:10]


def test_event_language_is_marked_when_it_differs(client, seeded):
    """WCAG 3.1.2: a French event's title on the English page is marked lang="fr"."""
    english = client.get(f"/events/{seeded.events['debate']}?lang=en").get_data(as_text=True)
    assert '<h1 id="event-title" lang="fr">' in english
    assert 'lang="fr">Débat : le tirage au sort' in client.get("/events").get_data(as_text=True)
    french = client.get(f"/events/{seeded.events['debate']}?lang=fr").get_data(as_text=True)
    assert '<h1 id="event-title">' in french
