"""Every page answers, in the right language, with its security headers; the agenda filters; event
pages show what a citizen needs; remote events send registration to their origin."""

from __future__ import annotations

import re

from sqlalchemy import select

from tests.web.remote import add_remote


def text(response) -> str:
    return response.get_data(as_text=True)


def test_public_pages_answer(app, client, seeded):
    remote = add_remote(app)
    pages = [
        "/", "/events", "/events?when=today", "/events?when=weekend", "/events?when=month", "/events?scope=local",
        "/events?when=custom&start_date=2020-01-01&end_date=2040-01-01", "/map", "/map?city=Paris", "/places",
        f"/rooms/{seeded.room_ids[0]}", f"/rooms/{seeded.room_ids[0]}?week=2030-01-07", "/directory",
        "/organisations/democratie-ouverte", "/charter", "/subscribe", "/subscribe?city=Lyon", "/embed",
        "/embed?city=Lyon&limit=2", "/login", "/password-reset", f"/events/{seeded.events['debate']}",
        f"/events/{seeded.events['workshop']}", f"/events/{remote.public_uuid}",
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, (page, text(response)[:500])
        assert response.mimetype == "text/html", page
        body = text(response)
        assert '<html lang="' in body and 'id="main"' in body or page == "/embed" or page.startswith("/embed?")


def test_not_found_page_is_html_with_the_layout(client):
    response = client.get("/events/does-not-exist")
    assert response.status_code == 404
    body = text(response)
    assert "<main" in body and "skip-link" in body
    assert client.get("/rooms/999").status_code == 404


def test_security_headers(client, seeded):
    page = client.get("/")
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "tile.openstreetmap.org" in page.headers["Content-Security-Policy"]
    widget = client.get("/embed")
    assert "X-Frame-Options" not in widget.headers
    assert "frame-ancestors *" in widget.headers["Content-Security-Policy"]
    script = client.get("/embed.js")
    assert script.mimetype == "text/javascript"
    assert "data-halles-events" in text(script) and "/embed" in text(script)


def test_no_inline_scripts_or_styles(client, seeded):
    """The CSP forbids inline code: pages must not rely on any."""
    for page in ("/", "/events", "/map", f"/events/{seeded.events['debate']}", f"/rooms/{seeded.room_ids[0]}"):
        body = text(client.get(page))
        assert " style=" not in body, page
        for script in re.findall(r"<script([^>]*)>(.*?)</script>", body, flags=re.S):
            attributes, content = script
            assert "src=" in attributes or 'type="application/json"' in attributes, (page, content[:80])


def test_agenda_lists_local_and_network_events_with_their_place(app, client, seeded):
    add_remote(app)
    body = text(client.get("/events"))
    assert "Débat : le tirage au sort" in body
    assert "Débat citoyen : l&#39;eau, un bien commun" in body
    assert "La Fabrique Commune" in body and "Lyon" in body
    # A re-shared event says who shared it.
    assert "Festival des quartiers" in body and "Le Comptoir des Quartiers" in body
    only_here = text(client.get("/events?scope=local"))
    assert "Débat : le tirage au sort" in only_here and "un bien commun" not in only_here


def test_agenda_filters(app, client, seeded):
    add_remote(app)
    lyon = text(client.get("/events?city=Lyon"))
    assert "un bien commun" in lyon and "tirage au sort" not in lyon
    # Accents and case do not matter in the text search.
    found = text(client.get("/events?q=DEBAT"))
    assert "tirage au sort" in found and "budget participatif" not in found
    # Every ticked accessibility feature must be offered.
    signs = text(client.get("/events?accessible=sign_language&accessible=hearing_loop"))
    assert "tirage au sort" in signs and "un bien commun" not in signs
    comma = text(client.get("/events?accessible=sign_language,hearing_loop"))
    assert "tirage au sort" in comma and "un bien commun" not in comma
    paid = text(client.get("/events?free=false"))
    assert "Projection" in paid and "tirage au sort" not in paid
    screening = text(client.get("/events?category=screening"))
    assert "Projection" in screening and "tirage au sort" not in screening
    nothing = text(client.get("/events?when=custom&start_date=2001-01-01&end_date=2001-01-02"))
    assert "tirage au sort" not in nothing and 'class="empty"' in nothing
    # Values that mean nothing are ignored, with a note, never an error page.
    odd = client.get("/events?category=cooking&accessible=teleport&when=yesterday&free=maybe")
    assert odd.status_code == 200 and "tirage au sort" in text(odd)


def test_feed_links_carry_the_filters(client, seeded):
    body = text(client.get("/subscribe?city=Lyon&accessible=sign_language&free=true&when=custom"
                           "&start_date=2030-01-01&end_date=2030-01-31"))
    feed = re.search(r'id="ics-url" value="([^"]+)"', body).group(1)
    assert feed.startswith("http://127.0.0.1:5000/events.ics?")
    query = feed.split("?", 1)[1].replace("&amp;", "&")
    assert "scope=network" in query and "city=Lyon" in query and "accessible=sign_language" in query
    assert "free=true" in query and "from=2030-01-01" in query and "to=2030-02-01" in query
    assert 'data-halles-events="' in body and "/embed?" in body


def test_a_rolling_period_is_not_frozen_into_subscriptions(client, seeded):
    """"This weekend" is another weekend next week: the widget and the calendar and Atom feeds keep the
    period by name (the feeds read ``when`` at each fetch) with the other filters."""
    body = text(client.get("/subscribe?when=weekend&city=Paris&free=true"))
    for feed in ("ics-url", "atom-url"):
        query = re.search(rf'id="{feed}" value="[^"?]+\?([^"]+)"', body).group(1).replace("&amp;", "&")
        assert "city=Paris" in query and "free=true" in query and "from=" not in query and "to=" not in query
        assert "when=weekend" in query
        feed_path = "/events.ics" if feed == "ics-url" else "/events.atom"
        assert client.get(f"{feed_path}?{query}").status_code == 200
    widget = re.search(r'data-halles-events="([^"]+)"', body).group(1).replace("&amp;", "&")
    assert "when=weekend" in widget and "from=" not in widget and "city=Paris" in widget
    assert f'src="http://127.0.0.1:5000/embed?{widget}"'.replace("&", "&amp;") in body
    assert 'id="period-note"' in body and "Ce week-end" in body
    # The agenda's own feed links follow the same rule.
    page = text(client.get("/events?when=month&category=debate"))
    alternate = re.search(r'type="text/calendar"[^>]*href="([^"]+)"', page).group(1)
    assert "category=debate" in alternate and "from=" not in alternate and "when=month" in alternate
    # Fixed dates stay fixed.
    custom = text(client.get("/subscribe?when=custom&start_date=2030-01-01&end_date=2030-01-31"))
    assert "from=2030-01-01" in custom and 'id="period-note"' not in custom
    # The widget reads the period each time it loads.
    assert client.get("/embed?when=weekend&city=Paris").status_code == 200


def test_feed_of_the_filtered_list_is_served(client, seeded):
    body = text(client.get("/subscribe?category=debate"))
    query = re.search(r'id="ics-url" value="[^"?]+\?([^"]+)"', body).group(1).replace("&amp;", "&")
    calendar = client.get(f"/events.ics?{query}")
    assert calendar.status_code == 200 and calendar.mimetype == "text/calendar"
    data = text(calendar)
    assert "tirage au sort" in data and "budget participatif" not in data
    atom = client.get(f"/events.atom?{query}")
    assert atom.status_code == 200 and "tirage au sort" in text(atom)


def test_event_page_shows_time_place_accessibility_organisers_and_places(client, seeded):
    body = text(client.get(f"/events/{seeded.events['debate']}"))
    assert "19:00" in body and "21:00" in body
    assert "24 rue de Belleville" in body and "75020 Paris" in body
    assert "Démocratie Ouverte" in body
    assert "67" in body  # 70 places, 3 confirmed registrations
    assert f'/events/{seeded.events["debate"]}.ics' in body
    assert 'action="/events/' in body and "/register" in body
    assert "mailto:?subject=" in body


def test_recurring_event_lets_people_choose_the_date(client, seeded):
    body = text(client.get(f"/events/{seeded.events['workshop']}"))
    assert body.count('<option value="') >= 6
    assert 'name="occurrence"' in body


def test_remote_event_registers_at_its_origin(app, client, seeded):
    remote = add_remote(app)
    body = text(client.get(f"/events/{remote.public_uuid}"))
    assert remote.registration_url in body
    assert 'name="email"' not in body  # no local form: the organisers would never see it
    before = registration_count(app)
    response = client.post(f"/events/{remote.public_uuid}/register", data={"name": "A", "email": "a@example.org"})
    assert response.status_code == 409
    assert registration_count(app) == before


def registration_count(app) -> int:
    from sqlalchemy import func, select

    from node.events.models import Registration
    from node.extensions import db

    with app.app_context():
        return db.session.scalar(select(func.count(Registration.id)))


def test_map_page_has_points_and_the_list(client, seeded):
    body = text(client.get("/map"))
    assert 'id="map-data"' in body and '"lat": 48.8722' in body
    assert "leaflet.js" in body and 'data-tiles="https://tile.openstreetmap.org/{z}/{x}/{y}.png"' in body
    # The list is on the page, so nothing depends on the tiles or JavaScript.
    assert "tirage au sort" in body and "Les Halles Civiques — Belleville" in body


def test_tile_server_is_configurable(make_app):
    app = make_app(HALLES_TILE_URL="https://{s}.tiles.example.org/{z}/{x}/{y}.png")
    response = app.test_client().get("/map")
    assert 'data-tiles="https://{s}.tiles.example.org/{z}/{x}/{y}.png"' in text(response)
    assert "https://*.tiles.example.org" in response.headers["Content-Security-Policy"]


def test_embed_widget_lists_public_events_and_links_back(client, seeded):
    body = text(client.get("/embed?category=debate"))
    assert "tirage au sort" in body and 'target="_blank"' in body
    assert "http://127.0.0.1:5000/events/" in body
    assert "budget participatif" not in body


def test_room_page_shows_prices_and_availability_without_who(client, seeded):
    body = text(client.get(f"/rooms/{seeded.room_ids[0]}"))
    assert "25,00" in body or "25.00" in body  # NGO tariff 2500 cents per hour
    assert "Nadia" not in body and "nadia@" not in body  # taken slots never say by whom
    assert 'name="category"' in body
    # Member categories are not offered to guests.
    assert 'value="member"' not in body and 'value="resident_member"' not in body


def test_places_page(client, seeded):
    body = text(client.get("/places"))
    assert "Grande salle Olympe de Gouges" in body and "Du lundi au vendredi" in body
    assert "Métro Belleville" in body


def test_charter_page_shows_text_and_hash(app, client, seeded):
    from node.charters.services import current_version

    with app.app_context():
        digest = current_version().sha256
    body = text(client.get("/charter"))
    assert digest in body and "<h2>" in body


def test_charter_markdown_is_escaped():
    from node.web.text import markdown

    html = str(markdown("# Titre\n\nUn **mot** <script>alert(1)</script>\n\n- un\n- deux\n\n---\n"))
    assert "<h2>Titre</h2>" in html and "<strong>mot</strong>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<ul><li>un</li><li>deux</li></ul>" in html and "<hr>" in html


def test_links_from_other_nodes_must_be_web_addresses(app, client, seeded):
    """A peer could send a javascript: URL as registration link or website: it is never put in an href."""
    from node.events.models import Event
    from node.extensions import db
    from node.fedi.models import RemoteOrganisation

    remote = add_remote(app)
    with app.app_context():
        event = db.session.scalar(select(Event).where(Event.uuid == remote.public_uuid))
        event.registration_url = "javascript:alert(document.cookie)"
        event.image_url = "javascript:alert(1)"
        event.online_url = "data:text/html,<script>alert(1)</script>"
        event.ap_id = "javascript:alert(2)"
        db.session.commit()
    body = client.get(f"/events/{remote.public_uuid}").get_data(as_text=True)
    assert "javascript:" not in body and "data:text/html" not in body
    from tests.web.seed import PASSWORD

    with app.app_context():
        org = db.session.scalar(select(RemoteOrganisation))
        org.fields = {**org.fields, "website": "javascript:alert(3)"}
        db.session.commit()
    client.post("/login", data={"email": seeded.member_email, "password": PASSWORD})
    assert "javascript:" not in client.get("/directory").get_data(as_text=True)
