"""Every route of the app (``app.url_map``) and every method, for every role: anonymous, a member, the
manager of the organisation concerned, the manager of another organisation, the office manager, an
admin, a peer node and a node that is not a peer. No 5xx anywhere; a role below a route's level gets
401 (no account) or 403 (not allowed) -- or 404 where the object is hidden from it -- and a refused
write changes no row; a role at the level is never refused. Peers see network-scoped outbox entries,
others do not.

The levels are written here from the permission rules (node/common/permissions.py), not read from
the code under test: a route without a level fails the test, so a new route must be placed.
``HALLES_MATRIX_DISCOVER=1 pytest -s`` prints the whole table of answers."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime

import pytest
import requests

from federation.httpsig import sign_request
from node.fedi.identity import load_identity
from tests.network.helpers import peer
from tests.resilience import tally
from tests.resilience.support import event_body, seed_world, slot

ROLES = ("anonymous", "non_peer", "peer", "member", "other_org_manager", "org_manager", "office_manager", "admin")
SIGNED_IN = ("member", "other_org_manager", "org_manager", "office_manager", "admin")
LEVELS = {
    "public": set(ROLES),
    "user": set(SIGNED_IN),
    # managers of an organisation (any) and staff
    "publisher": {"other_org_manager", "org_manager", "office_manager", "admin"},
    # the manager of the organisation the object belongs to (organisation A), and staff
    "manager": {"org_manager", "office_manager", "admin"},
    "staff": {"office_manager", "admin"},
    "admin": {"admin"},
    # HTTP-signature endpoints: nobody gets in with a token or a session (see the inbox tests)
    "signed": set(),
}
PASSWORD = "correct horse battery staple"

#: (method, endpoint) -> level. Object ids in paths belong to organisation A (or are unknown tokens).
POLICY: dict[tuple[str, str], str] = {}


def _levels(level: str, *keys: str) -> None:
    for key in keys:
        method, endpoint = key.split(" ")
        POLICY[(method, endpoint)] = level


_levels("public",
        "GET web.index", "GET fedi.nodeinfo_links", "GET fedi.webfinger", "GET fedi.activity", "GET fedi.actor",
        "GET charters_api.current_charter", "GET charters_api.list_versions", "GET charters_api.get_version",
        "GET events_api.list_events", "GET events_api.get_event", "POST events_api.register",
        "POST members_api.accept_invitation", "GET openapi.openapi_document",
        "GET organisations_api.list_organisations", "GET organisations_api.get_organisation",
        "POST members_api.request_password_reset", "POST members_api.reset_password",
        "GET events_api.registration_status", "POST events_api.registration_action",
        "GET spaces_api.list_rooms", "GET spaces_api.get_room", "GET spaces_api.room_availability",
        "GET spaces_api.list_sites", "GET spaces_api.get_site", "POST spaces_api.request_booking",
        "GET web.charter", "GET charters_web.charter_text", "GET charters_web.charter_version_text",
        "GET web.directory", "GET web.embed", "GET web.embed_script", "GET web.events_list",
        "GET events_web.events_atom", "GET events_web.events_ics", "GET web.event", "GET events_web.event_ics",
        "POST web.event_register", "GET fedi.followers", "GET fedi.following", "GET ops.healthz",
        "GET web.invitation", "POST web.invitation", "GET web.login", "POST web.login", "POST web.logout",
        "GET web.map_page", "GET fedi.nodeinfo", "GET web.organisation", "GET fedi.outbox_collection",
        "GET web.password_reset_request", "POST web.password_reset_request", "GET web.password_reset",
        "POST web.password_reset", "GET web.places", "GET events_web.registration_page",
        "POST events_web.registration_submit", "GET web.room", "POST web.room_request", "GET spaces_web.room_calendar",
        "GET static", "GET web.subscribe")
_levels("user",
        "GET members_api.me", "GET spaces_api.list_desks", "GET web.manage", "GET web.manage_events")
_levels("publisher",
        "GET spaces_api.list_bookings", "GET web.manage_bookings", "POST web.manage_bookings", "GET web.event_new",
        "POST web.event_new")
_levels("manager",
        "POST spaces_api.create_booking", "GET spaces_api.get_booking", "POST spaces_api.cancel_booking",
        "POST charters_api.sign", "POST events_api.create_event", "PATCH events_api.update_event",
        "DELETE events_api.delete_event", "POST events_api.cancel_event", "GET events_api.list_registrations",
        "GET events_api.registrations_csv", "PATCH organisations_api.update_organisation",
        "PUT organisations_api.set_consent", "POST web.event_cancel", "GET web.event_edit", "POST web.event_edit",
        "GET web.event_registrations", "GET web.event_registrations_csv", "GET web.organisation_edit",
        "POST web.organisation_save", "GET web.charter_sign", "POST web.charter_sign", "POST web.organisation_consent",
        # confirmation pages (the booking and the event belong to organisation A)
        "GET web.event_cancel", "GET web.event_delete", "POST web.event_delete", "GET web.booking_cancel",
        "POST web.booking_cancel")
_levels("staff",
        "POST spaces_api.approve_booking", "POST spaces_api.refuse_booking", "GET charters_api.list_signatures",
        "POST spaces_api.create_desk", "PATCH spaces_api.update_desk", "DELETE spaces_api.delete_desk",
        "GET members_api.list_invitations", "POST members_api.invite", "POST organisations_api.create_organisation",
        "DELETE organisations_api.delete_organisation", "POST spaces_api.create_room", "PATCH spaces_api.update_room",
        "DELETE spaces_api.delete_room", "POST spaces_api.create_site", "PATCH spaces_api.update_site",
        "DELETE spaces_api.delete_site", "GET members_api.list_users", "POST members_api.create_user",
        "GET members_api.get_user", "PATCH members_api.update_user", "POST members_api.deactivate_user",
        "GET web.dashboard", "POST web.booking_decision", "GET web.office_organisations",
        "POST web.office_organisations",
        # the office manager runs membership (node.common.permissions.ASSIGNABLE_ROLES)
        "GET web.admin_users", "POST web.admin_users", "POST web.admin_user_update", "POST web.admin_user_deactivate")
_levels("admin",
        "POST charters_api.publish_version", "GET web.admin_charter", "POST web.admin_charter", "GET web.admin_peers",
        "POST web.admin_peers", "GET web.admin_peer", "POST web.admin_peer_decision", "GET web.admin_settings")
_levels("signed", "POST fedi.inbox")

#: Routes run last, least privileged role first: the first role allowed changes the object for good.
DESTRUCTIVE = {"DELETE", "delete", "deactivate", "cancel", "refuse", "approve", "erase", "decision"}
#: Endpoints whose success changes what every later request sees (a new charter to sign): the very end.
LAST = {("POST", "charters_api.publish_version"), ("POST", "web.admin_charter")}
_PARAM = re.compile(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>")


def bodies(seeded: dict, charter_sha: str) -> dict[tuple[str, str], dict]:
    """Valid JSON bodies for API writes, so that the permission decides and not the validation."""
    ids = seeded["paths"]
    org_a = seeded["org_a"]
    return {
        ("POST", "spaces_api.create_booking"): {"room_id": ids["room_id"], **slot(15, "10:00", "11:00"),
                                                "category": "ngo", "organisation_id": org_a},
        ("POST", "spaces_api.approve_booking"): {"message": "Les clés sont à l'accueil."},
        ("POST", "spaces_api.refuse_booking"): {"message": "Salle en travaux."},
        ("POST", "spaces_api.cancel_booking"): {"message": "Annulé."},
        ("POST", "charters_api.sign"): {"organisation_id": org_a, "sha256": charter_sha},
        ("POST", "charters_api.publish_version"): {"version": "2099.1", "title": "Charte", "body": "Nouvelle charte."},
        ("POST", "spaces_api.create_desk"): {"site_id": ids["site_id"], "label": "Poste 9"},
        ("PATCH", "spaces_api.update_desk"): {"label": "Poste 2"},
        ("POST", "events_api.create_event"): event_body(title="Atelier de la matrice", organiser_ids=[org_a]),
        ("PATCH", "events_api.update_event"): {"title": "Débat (nouvelle salle)"},
        ("POST", "events_api.cancel_event"): {},
        ("POST", "events_api.register"): {"name": "Alex", "email": "alex@example.org"},
        ("POST", "members_api.invite"): {"email": "invitee@example.org", "role": "member", "organisation_id": org_a},
        ("POST", "members_api.accept_invitation"): {"password": PASSWORD, "name": "Nouvelle"},
        ("POST", "organisations_api.create_organisation"): {"name": "Nouvelle association",
                                                            "description": "Association"},
        ("PATCH", "organisations_api.update_organisation"): {"description": "Association de quartier."},
        ("PUT", "organisations_api.set_consent"): {"city": "public"},
        ("POST", "members_api.request_password_reset"): {"email": "nobody@example.org"},
        ("POST", "members_api.reset_password"): {"password": PASSWORD},
        ("POST", "spaces_api.create_room"): {"site_id": ids["site_id"], "name": "Salle 9", "capacity": 10},
        ("PATCH", "spaces_api.update_room"): {"description": "Lumineuse."},
        ("POST", "spaces_api.create_site"): {"name": "Annexe", "address": "3 rue Ramponeau", "city": "Paris"},
        ("PATCH", "spaces_api.update_site"): {"opening_hours": "9h-19h"},
        ("POST", "members_api.create_user"): {"email": "recrue@example.org", "role": "member",
                                              "organisation_id": org_a},
        ("PATCH", "members_api.update_user"): {"name": "Nom changé"},
        ("POST", "members_api.deactivate_user"): {},
        ("POST", "events_api.registration_action"): {},
    }


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Matrix:
    def __init__(self, paris, lyon, marseille, seeded: dict) -> None:
        self.paris, self.lyon, self.marseille, self.seeded = paris, lyon, marseille, seeded
        self.app = paris.app
        self.web_clients: dict[str, object] = {}
        with self.app.app_context():
            from node.charters.services import current_version

            self.charter_sha = current_version().sha256
        self.bodies = bodies(seeded, self.charter_sha)
        self.signers = {"peer": lyon.query(load_identity), "non_peer": marseille.query(load_identity)}

    def web_client(self, role: str):
        if role not in self.web_clients:
            client = self.app.test_client()
            if role in SIGNED_IN:
                response = client.post("/login", data={"email": self.seeded["emails"][role], "password": PASSWORD})
                assert response.status_code == 302, (role, response.status_code)
            self.web_clients[role] = client
        return self.web_clients[role]

    def call(self, role: str, method: str, url: str, endpoint: str):
        api = url.startswith("/api/")
        body = self.bodies.get((method, endpoint))
        headers: dict[str, str] = {}
        if endpoint == "web.logout" and role in SIGNED_IN:
            client = self.app.test_client()  # signing out the shared client would sign out later requests
            client.post("/login", data={"email": self.seeded["emails"][role], "password": PASSWORD})
        else:
            client = self.app.test_client() if api or role not in SIGNED_IN else self.web_client(role)
        if api and role in SIGNED_IN:
            headers.update(self.seeded["headers"][role])
        data = None
        if method in ("POST", "PUT", "PATCH"):
            if api or endpoint == "fedi.inbox":
                data = json.dumps(body if body is not None else {}).encode()
                headers["Content-Type"] = "application/json" if api else "application/activity+json"
            else:
                data = {}
        if role in self.signers:
            identity = self.signers[role]
            raw = data if isinstance(data, bytes) else None
            headers.update(sign_request(method, f"{self.paris.url}{url}", headers, raw, identity.rsa_key,
                                        identity.rsa_key_id, flavour="rfc9421", now=now()))
        return client.open(url, method=method, data=data, headers=headers)


def concrete(rule, paths: dict) -> str:
    url = _PARAM.sub(lambda match: str(paths.get(match.group(1), "unknown")), rule.rule)
    if rule.endpoint == "static":
        return "/static/css/halles.css"
    return url


@pytest.fixture
def matrix(make_node):
    paris = make_node("Les Halles Civiques", "Paris", HALLES_RATE_LIMIT_REGISTRATIONS="off",
                      HALLES_RATE_LIMIT_LOGIN="off", HALLES_RATE_LIMIT_INBOX="off")
    lyon = make_node("La Fabrique Commune", "Lyon")
    marseille = make_node("Le Comptoir des Quartiers", "Marseille")
    seeded = seed_world(paris.app)
    # Peering: Lyon asks with the charter attestation, Paris approves. Marseille is a stranger.
    peer(lyon, paris, [paris, lyon, marseille])
    seeded["emails"] = _set_passwords(paris.app, seeded)
    # A network-only event: its outbox entry is for peers.
    response = paris.client.post("/api/v1/events", headers=seeded["headers"]["admin"],
                                 json=event_body(title="Réunion du réseau", visibility="network",
                                                 organiser_ids=[seeded["org_a"]]))
    assert response.status_code == 201, response.get_json()
    seeded["paths"].update(_federation_paths(paris, lyon))
    return Matrix(paris, lyon, marseille, seeded)


def _federation_paths(paris, lyon) -> dict:
    """The peer's row in Paris (admin pages) and a public activity of Paris (its URL)."""
    from sqlalchemy import select

    from node.extensions import db
    from node.fedi.models import OutboxEntry, RemoteActor

    def read():
        actor_id = db.session.scalar(select(RemoteActor.id).where(RemoteActor.ap_id == lyon.actor))
        activity = db.session.scalar(select(OutboxEntry.activity_id).where(OutboxEntry.audience == "public")
                                     .order_by(OutboxEntry.id.desc()))
        return {"actor_id": actor_id, "activity_uuid": activity.rsplit("/", 1)[1]}

    return paris.query(read)


#: Columns that change on every request and say nothing about permissions.
VOLATILE = {("api_tokens", "last_used_at"), ("remote_actors", "fetched_at"), ("remote_actors", "document"),
            ("users", "last_login_at"), ("users", "last_seen_at")}


def fingerprint(app) -> int:
    """A hash of every row of every table (volatile columns and rate-limit buckets left out)."""
    from sqlalchemy import select

    from node.extensions import db

    digest = []
    with app.app_context():
        for name, table in sorted(db.metadata.tables.items()):
            if name == "rate_limit_buckets":
                continue
            columns = [column for column in table.columns if (name, column.name) not in VOLATILE]
            rows = db.session.execute(select(*columns).order_by(*table.primary_key.columns)).all()
            digest.append((name, [tuple(map(repr, row)) for row in rows]))
    return hash(repr(digest))


def _set_passwords(app, seeded: dict) -> dict[str, str]:
    """Give each role's account a password (web pages sign in with the form); returns role -> email."""
    from sqlalchemy import select

    from node.common.auth import hash_secret
    from node.extensions import db
    from node.members import services as members
    from node.members.models import ApiToken

    emails = {}
    with app.app_context():
        for role in SIGNED_IN:
            token = seeded["headers"][role]["Authorization"].split(" ", 1)[1]
            user = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_secret(token))).user
            members.set_password(user, PASSWORD)
            emails[role] = user.email
        db.session.commit()
    return emails


def refused(role: str, response, api: bool) -> bool:
    if response.status_code in (401, 403, 404):
        return True
    # Web pages send a visitor without an account to the sign-in page.
    return not api and role not in SIGNED_IN and response.status_code == 302 and "/login" in response.location


def test_every_route_for_every_role(matrix):
    app = matrix.app
    rules = [rule for rule in app.url_map.iter_rules()]
    cells = []
    for rule in rules:
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            key = (method, rule.endpoint)
            assert key in POLICY, f"{method} {rule.rule} ({rule.endpoint}) has no level in the access matrix"
            cells.append((method, rule))
    # Reads and harmless writes first; then decisions (approve, cancel...), then deletions, then a new charter.
    cells.sort(key=lambda cell: ((cell[0], cell[1].endpoint) in LAST, cell[0] == "DELETE",
                                 any(word in cell[1].rule or word == cell[0] for word in DESTRUCTIVE), cell[1].rule))
    discover = os.environ.get("HALLES_MATRIX_DISCOVER")
    problems = []
    tried = 0
    for method, rule in cells:
        url = concrete(rule, matrix.seeded["paths"])
        level = POLICY[(method, rule.endpoint)]
        api = url.startswith("/api/")
        row = []
        for role in ROLES:
            before = fingerprint(app) if method != "GET" else None
            response = matrix.call(role, method, url, rule.endpoint)
            response.get_data()
            response.close()  # static files are streamed from an open file
            tried += 1
            row.append(str(response.status_code))
            status = response.status_code
            if status >= 500:
                problems.append(f"{method} {url} as {role}: {status} {response.get_data(as_text=True)[:200]}")
                continue
            allowed = role in LEVELS[level]
            if allowed and status in (401, 403):
                problems.append(f"{method} {url} as {role} (level {level}): refused {status} "
                                f"{response.get_data(as_text=True)[:200]}")
            if not allowed:
                unchanged = before is None or fingerprint(app) == before
                if level == "signed":
                    ok = 400 <= status < 500
                else:
                    # A web form refused by the rules goes back to its page with the reason (302) and
                    # changes nothing; the API answers 401/403/404.
                    ok = refused(role, response, api) or (not api and status == 302 and before is not None)
                if not ok:
                    problems.append(f"{method} {url} as {role} (level {level}): not refused, {status}")
                if not unchanged:
                    problems.append(f"{method} {url} as {role} (level {level}): a refused write changed the data")
        if discover:
            cells_text = " ".join(f"{role[:6]}={code}" for role, code in zip(ROLES, row, strict=True))
            print(f"{method:6} {url:60} {level:9} {cells_text}")
    tally.inputs("access matrix: route x role requests", tried)
    assert not problems, "\n".join(problems)


def _outbox_items(node, signer=None) -> list[dict]:
    url = f"{node.url}/outbox?after=0&limit=500"
    headers = {}
    if signer is not None:
        headers = sign_request("GET", url, {}, None, signer.rsa_key, signer.rsa_key_id, flavour="rfc9421", now=now())
    response = requests.get(url, headers=headers, timeout=10)
    assert response.status_code == 200
    return response.json()["orderedItems"]


def test_peers_see_network_outbox_entries_and_others_do_not(matrix):
    def has_network_event(items) -> bool:
        return any(isinstance(item.get("object"), dict) and item["object"].get("name") == "Réunion du réseau"
                   for item in items)

    assert has_network_event(_outbox_items(matrix.paris, matrix.signers["peer"]))
    assert not has_network_event(_outbox_items(matrix.paris, matrix.signers["non_peer"]))
    assert not has_network_event(_outbox_items(matrix.paris))
    # A forged signature (a key the signer does not own) counts as nobody.
    forged = sign_request("GET", f"{matrix.paris.url}/outbox?after=0&limit=500", {}, None,
                          matrix.signers["non_peer"].rsa_key, matrix.signers["peer"].rsa_key_id,
                          flavour="rfc9421", now=now())
    response = requests.get(f"{matrix.paris.url}/outbox?after=0&limit=500", headers=forged, timeout=10)
    assert response.status_code == 200 and not has_network_event(response.json()["orderedItems"])
    tally.inputs("access matrix: outbox as peer, stranger, forger, anonymous", 4)
