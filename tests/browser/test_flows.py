"""The web interface walked as people use it, in a real browser against real nodes:

- a citizen filters the network's events by city and accessibility, opens an event of another node,
  registers there, gets the confirmation email from the SMTP server, confirms and cancels;
- an organisation manager signs the charter and publishes a recurring event;
- the office manager approves a booking request and reads the occupancy chart;
- the language switch shows French and English."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest

from tests.browser.support import build_network
from tests.web.seed import seed

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LINK = re.compile(r"(https?://\S+/registrations/\S+/(confirm|cancel|erase))")


def _body(message) -> str:
    return message.get_body(("plain",)).get_content()


def sign_in(page, base: str, email: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Mot de passe").fill(password)
    page.get_by_role("button", name="Se connecter").last.click()
    page.wait_for_url(lambda url: "/login" not in url)


def test_citizen_finds_a_network_event_registers_at_its_origin_and_cancels(make_app, new_page, smtp_server):
    paris, lyon, data, lyon_events = build_network(make_app, lyon_config={"HALLES_SMTP_URL": smtp_server.url})
    try:
        page = new_page()
        page.goto(f"{paris.url}/events")
        filters = page.locator("details.filters")
        if not filters.evaluate("el => el.open"):
            filters.locator("summary").click()
        page.get_by_label("Ville").select_option("Lyon")
        page.get_by_label("Langue des signes").check()
        page.get_by_role("button", name="Voir les événements").click()
        page.wait_for_url(re.compile(r"city=Lyon"))
        assert "accessible=sign_language" in page.url
        results = page.locator(".card")
        titles = results.locator("h4").all_inner_texts()
        assert titles == ["Débat citoyen : l'eau, un bien commun"]  # the Lyon workshop has no signer
        card = results.first
        assert "La Fabrique Commune" in card.inner_text() and "Lyon" in card.inner_text()
        assert "Réseau" in card.inner_text()

        card.get_by_role("link").click()
        page.wait_for_url(re.compile(r"/events/"))
        assert page.url.startswith(paris.url)
        assert page.locator("h1").inner_text() == "Débat citoyen : l'eau, un bien commun"
        assert page.locator("#register form").count() == 0  # no local copy of the registration
        page.get_by_role("link", name=re.compile("S'inscrire sur le site de La Fabrique Commune")).click()
        page.wait_for_url(re.compile(re.escape(lyon.url)))

        # On the origin node: one short form.
        page.get_by_label("Votre nom").fill("Jeanne Citoyenne")
        page.get_by_label("Votre email").fill("jeanne@example.org")
        page.get_by_role("button", name="Je m'inscris").click()
        assert "jeanne@example.org" in page.locator(".flash-success").inner_text()

        from node.mail.services import send_pending

        lyon.query(send_pending)
        (message,) = smtp_server.wait_for(1)
        assert message["To"] == "jeanne@example.org"
        links = {action: url for url, action in LINK.findall(_body(message))}
        assert set(links) == {"confirm", "cancel", "erase"}

        page.goto(links["confirm"])
        assert page.locator("#status").get_attribute("data-status") == "pending"
        page.get_by_role("button", name="Confirmer mon inscription").click()
        assert page.locator("#status").get_attribute("data-status") == "confirmed"

        page.goto(links["cancel"])
        page.get_by_role("button", name="Annuler mon inscription").click()
        assert page.locator("#status").get_attribute("data-status") == "cancelled"
        # The place is free again at the origin.
        page.goto(f"{lyon.url}{urlsplit(lyon_events['debate']['url']).path}")
        assert "40 places restantes" in page.locator("#register").inner_text()
    finally:
        paris.stop()
        lyon.stop()


def test_organisation_manager_signs_the_charter_and_publishes_a_recurring_event(serve, new_page):
    node = serve()
    data = seed(node.app)
    page = new_page()
    sign_in(page, node.url, data.unsigned_manager_email, data.password)
    page.get_by_role("link", name="Lire et signer la charte").click()
    digest = page.locator("#charter-hash").inner_text()
    assert len(digest) == 64
    page.get_by_label("J'ai lu cette charte").check()
    page.get_by_role("button", name=re.compile("Signer la version")).click()
    assert "signé la version" in page.locator(".flash-success").inner_text()

    page.get_by_role("link", name="Nouvel événement").first.click()
    page.get_by_label("Titre", exact=True).fill("Podcast en public : la parole aux habitants")
    page.get_by_label("Description", exact=True).fill("Enregistrement public de notre podcast.\n\nEntrée libre.")
    page.get_by_label("Catégorie").select_option("workshop")
    day = data.today + timedelta(days=10)
    page.get_by_label("Date", exact=True).fill(day.isoformat())
    page.get_by_label("Début").fill("18:30")
    page.get_by_label("Fin").fill("20:00")
    zone = page.get_by_label("Fuseau horaire")
    assert zone.input_value() == "Europe/Paris"  # the node's zone by default
    assert zone.locator("option").nth(1).inner_text() == "America/Guadeloupe — Guadeloupe"
    page.get_by_label("Toutes les semaines").check()
    page.get_by_label("Nombre de fois", exact=True).fill("4")
    page.get_by_label("Ailleurs").check()
    page.get_by_label("Nom du lieu", exact=True).fill("Médiathèque Couronnes")
    page.get_by_label("Adresse", exact=True).fill("5 rue des Couronnes")
    page.get_by_label("Code postal", exact=True).fill("75020")
    page.get_by_label("Ville", exact=True).fill("Paris")
    page.get_by_label("Accès de plain-pied").check()
    page.get_by_label("Places", exact=True).fill("25")
    page.get_by_role("button", name="Publier").click()
    page.wait_for_url(re.compile(r"/events/[0-9a-f-]{36}$"))
    assert page.locator("h1").inner_text() == "Podcast en public : la parole aux habitants"
    assert "Votre événement est publié" in page.locator(".flash-success").inner_text()
    dates = page.locator("#dates-title + ul li").all_inner_texts()
    assert len(dates) == 4 and all("18:30" in text for text in dates)
    assert page.locator("#register select[name=occurrence] option").count() == 4


def test_office_manager_approves_a_booking_and_reads_the_occupancy(serve, new_page):
    node = serve()
    data = seed(node.app)
    page = new_page()
    sign_in(page, node.url, data.office_email, data.password)
    assert page.url.endswith("/office")
    request = page.locator(".request", has_text="Nadia Benali")
    request.get_by_role("button", name=re.compile("Accepter")).click()
    assert "acceptée" in page.locator(".flash-success").inner_text()
    assert page.locator(".request", has_text="Nadia Benali").count() == 0

    # The booking is six days ahead: this week or the next one on the chart.
    booked = data.today + timedelta(days=6)
    page.goto(f"{node.url}/office?week={booked.isoformat()}#occupancy")
    chart = page.locator(".chart", has_text="Grande salle Olympe de Gouges")
    assert "3.0 h réservées" in chart.inner_text()
    assert chart.locator("svg[role=img] rect.approved").count() >= 1
    description = chart.locator("svg desc").text_content()
    assert "3.0 h" in description
    page.get_by_text("Les chiffres sous forme de tableau").click()
    assert page.locator("#occupancy table").is_visible()


def test_office_manager_cancels_a_confirmed_booking_without_javascript(serve, new_page):
    node = serve()
    data = seed(node.app)
    page = new_page(javascript=False)  # the confirmation is a page, not a script
    sign_in(page, node.url, data.office_email, data.password)
    page.locator(".request", has_text="Nadia Benali").get_by_role("button", name=re.compile("Accepter")).click()
    booked = data.today + timedelta(days=6)
    room = f"{node.url}/rooms/{data.room_ids[0]}?week={booked.isoformat()}"
    page.goto(room)
    assert "14:00–17:00" in page.locator("main").inner_text()

    page.goto(f"{node.url}/office")
    row = page.locator("#approved tr", has_text="Nadia Benali")
    row.get_by_role("link", name=re.compile("Annuler…")).click()
    assert page.locator("h1").inner_text().startswith("Annuler la réservation")
    assert "Nadia Benali" in page.locator("main").inner_text()
    page.get_by_label("Message à la personne qui a réservé").fill("La salle est en travaux ce jour-là.")
    page.get_by_role("button", name="Annuler la réservation").click()
    assert page.url.endswith("/office#approved")
    assert "libre à nouveau" in page.locator(".flash-success").inner_text()
    assert page.locator("#approved tr", has_text="Nadia Benali").count() == 0
    page.goto(room)
    assert "14:00–17:00" not in page.locator("main").inner_text()  # the slot is free again


def test_organisation_manager_deletes_an_event_after_confirming(serve, new_page):
    node = serve()
    data = seed(node.app)
    page = new_page()
    sign_in(page, node.url, data.manager_email, data.password)
    page.goto(f"{node.url}/manage/events")
    title = "Débat : le tirage au sort peut-il sauver la démocratie locale ?"
    row = page.locator("tr", has_text=title)
    # Two different actions, two different pages.
    row.get_by_role("link", name=re.compile("^Annuler…")).click()
    assert page.locator("h1").inner_text() == "Annuler l'événement"
    assert "garde sa page" in page.locator("main").inner_text()
    page.get_by_role("link", name="Ne rien changer").click()
    page.locator("tr", has_text=title).get_by_role("link", name=re.compile("^Supprimer…")).click()
    assert page.locator("h1").inner_text() == "Supprimer l'événement"
    assert "3 personnes inscrites" in page.locator("main").inner_text()
    page.get_by_role("button", name="Supprimer définitivement").click()
    page.wait_for_url(re.compile(r"/manage/events$"))
    assert "est supprimé" in page.locator(".flash-success").inner_text()
    assert page.locator("tr", has_text=title).count() == 0

    response = page.goto(f"{node.url}/events/{data.events['debate']}")
    assert response.status == 410
    assert page.locator("h1").inner_text() == "Cette page a été supprimée"
    page.goto(f"{node.url}/events")
    assert title not in page.locator("main").inner_text()


def test_admin_deactivates_an_account_after_a_question_without_javascript(serve, new_page):
    node = serve()
    data = seed(node.app)
    page = new_page(javascript=False)
    sign_in(page, node.url, data.admin_email, data.password)
    page.goto(f"{node.url}/admin/users")
    row = page.locator("tr", has_text=data.member_email)
    confirm = row.get_by_role("button", name=re.compile("Oui, désactiver"))
    assert not confirm.is_visible()  # the first click only asks
    row.locator("summary", has_text="Désactiver").click()
    assert "ne pourra plus se connecter" in row.inner_text()
    confirm.click()
    assert page.locator(".flash-success").count() == 1
    assert page.locator("tr", has_text=data.member_email).locator("summary").count() == 0


def test_language_switch(serve, new_page):
    node = serve()
    seed(node.app)
    page = new_page(locale="fr-FR")
    page.goto(f"{node.url}/events?city=Paris")
    assert page.locator("html").get_attribute("lang") == "fr"
    assert page.locator("h1").inner_text() == "Les événements du réseau"
    page.locator(".lang-switch a[hreflang=en]").click()
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("h1").inner_text() == "Events across the network"
    assert "city=Paris" in page.url  # the same page, the same filters
    page.get_by_role("link", name="Rooms").first.click()
    assert page.locator("h1").inner_text() == "Rooms for your meetings and events"  # remembered
    page.locator(".lang-switch a[hreflang=fr]").click()
    assert page.locator("h1").inner_text() == "Des salles pour vos réunions et vos événements"


def test_admin_reads_a_peering_request_with_the_charter_diff_and_approves(make_app, new_page):
    from node.members.services import create_user
    from tests.browser.support import publish_network_charter
    from tests.support.nodes import Node, settle
    from tests.web.seed import password_hash

    paris = Node(make_app, name="Les Halles Civiques", city="Paris").start()
    marseille = Node(make_app, name="Le Comptoir des Quartiers", city="Marseille").start()
    try:
        for node in (paris, marseille):
            publish_network_charter(node.app)

        def admin():
            from node.extensions import db

            user = create_user(None, "chef@halles.test", "admin", name="Chef")
            user.password_hash = password_hash()
            db.session.commit()

        paris.query(admin)
        assert marseille.cli("peer", "request", paris.url).exit_code == 0
        settle([paris, marseille])

        assert "accepted" not in marseille.cli("peer", "list").output
        page = new_page()
        from tests.web.seed import PASSWORD

        sign_in(page, paris.url, "chef@halles.test", PASSWORD)
        page.goto(f"{paris.url}/admin/peers")
        request = page.locator(".request", has_text="Le Comptoir des Quartiers")
        assert "1.1" in request.inner_text() and "en vigueur" in request.inner_text()
        request.get_by_role("link", name="Lire les différences entre les chartes").click()
        diff = page.locator("pre.diff")
        assert "+Version 1.1 — adoptée par Le Comptoir des Quartiers (Marseille)" in diff.inner_text()
        assert "-Version 1.1 — adoptée par Les Halles Civiques (Paris)" in diff.inner_text()
        page.get_by_role("button", name="Accepter").click()
        assert "pair" in page.locator(".flash-success").inner_text()
        settle([paris, marseille])
        assert "accepted" in marseille.cli("peer", "list").output
    finally:
        paris.stop()
        marseille.stop()
