"""No page shows a visitor an event of ``members`` or ``network`` visibility, or a directory field its
organisation keeps ``private`` (or shares with the network only); signed-in people see what their
scope allows."""

from __future__ import annotations

from tests.web.remote import add_remote

MEMBERS_TITLE = "Assemblée des membres (réservée)"
NETWORK_TITLE = "Rencontre des tiers-lieux du réseau"
REMOTE_NETWORK_TITLE = "Réunion du réseau lyonnais"
PRIVATE_PHONE = "01 23 45 67 89"
NETWORK_EMAIL = "contact@democratie-ouverte.example"
REMOTE_NETWORK_EMAIL = "reseau-seulement@lyon-commun.example"


def _visitor_pages(seeded) -> list[str]:
    return [
        "/", "/events", "/events?scope=local", "/events?q=assemblee", "/events?q=reunion", "/events?category=meeting",
        "/map", "/embed", "/embed?category=meeting", "/subscribe", "/directory", "/organisations/democratie-ouverte",
        "/organisations/fabrique-des-communs", f"/rooms/{seeded.room_ids[1]}",
    ]


def test_visitor_never_sees_restricted_events_or_fields(app, client, seeded):
    add_remote(app)
    for page in _visitor_pages(seeded):
        body = client.get(page).get_data(as_text=True)
        for secret in (MEMBERS_TITLE, NETWORK_TITLE, REMOTE_NETWORK_TITLE, PRIVATE_PHONE, NETWORK_EMAIL,
                       REMOTE_NETWORK_EMAIL, "Ordre du jour confidentiel", "visio.example"):
            assert secret not in body, (page, secret)


def test_restricted_event_pages_are_not_found_for_visitors(app, client, seeded):
    remote = add_remote(app)
    for event_uuid in (seeded.events["members_only"], seeded.events["network_only"], remote.network_uuid):
        assert client.get(f"/events/{event_uuid}").status_code == 404
        # Registering cannot probe them either.
        response = client.post(f"/events/{event_uuid}/register", data={"name": "X", "email": "x@example.org"})
        assert response.status_code == 404


def test_feeds_linked_from_pages_hold_public_events_only(client, seeded):
    for feed in ("/events.ics?scope=network", "/events.atom?scope=network"):
        body = client.get(feed).get_data(as_text=True)
        assert MEMBERS_TITLE not in body and NETWORK_TITLE not in body


def test_signed_in_member_sees_member_events_and_network_fields(app, client, seeded, login):
    add_remote(app)
    login(client, seeded.member_email)
    events = client.get("/events").get_data(as_text=True)
    assert MEMBERS_TITLE in events and NETWORK_TITLE in events and REMOTE_NETWORK_TITLE in events
    assert client.get(f"/events/{seeded.events['members_only']}").status_code == 200
    directory = client.get("/directory").get_data(as_text=True)
    assert NETWORK_EMAIL in directory  # shared with the network
    assert PRIVATE_PHONE not in directory  # kept private
    assert REMOTE_NETWORK_EMAIL in directory and "Collectif Lyon Commun" in directory


def test_visitor_directory_points_to_the_peers_own_directories(app, client, seeded):
    add_remote(app)
    body = client.get("/directory").get_data(as_text=True)
    assert "Collectif Lyon Commun" not in body
    assert "http://lyon.test/directory" in body


def test_organisation_hidden_when_its_name_is_not_public(app, client, seeded, login):
    from node.extensions import db
    from node.organisations import services as organisations
    from node.organisations.models import Organisation

    with app.app_context():
        org = db.session.get(Organisation, seeded.org_ids["Fabrique des Communs"])
        organisations.set_consent(_admin(app), org, {"name": "network"})
        db.session.commit()
    assert client.get("/organisations/fabrique-des-communs").status_code == 404
    assert "Fabrique des Communs" not in client.get("/directory").get_data(as_text=True)
    login(client, seeded.member_email)
    assert client.get("/organisations/fabrique-des-communs").status_code == 200


def _admin(app):
    from node.members.services import find_user_by_email

    return find_user_by_email("admin@halles.test")
