"""Sample data put in a node through its API, and a row-by-row picture of a whole database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, inspect, select, table
from sqlalchemy.pool import NullPool

EVENT = {
    "title": "Débat : la démocratie locale",
    "description": "Entrée libre.",
    "starts_at": "2031-05-12T19:00:00+02:00",
    "ends_at": "2031-05-12T21:00:00+02:00",
    "timezone": "Europe/Paris",
    "location_kind": "place",
    "place_name": "Les Halles Civiques",
    "address": "1 rue de la République",
    "city": "Paris",
    "visibility": "public",
    "category": "debate",
}


def admin_headers(app, email: str = "admin@halles.example.org") -> dict[str, str]:
    from node.common.auth import TOKEN_PREFIX, hash_secret, new_secret
    from node.extensions import db
    from node.members.models import ApiToken, User

    with app.app_context():
        user = User(email=email, name="Admin", role="admin")
        db.session.add(user)
        db.session.flush()
        secret = new_secret(TOKEN_PREFIX)
        db.session.add(ApiToken(user_id=user.id, token_hash=hash_secret(secret), label="tests"))
        db.session.commit()
        db.session.remove()
    return {"Authorization": f"Bearer {secret}"}


def seed(app) -> dict[str, Any]:
    """An admin, a member organisation that signed the charter, a public event, a peer."""
    from node.common.timeutil import utcnow
    from node.extensions import db
    from node.fedi.models import Follow, RemoteActor

    client = app.test_client()
    headers = admin_headers(app)
    response = client.post("/api/v1/organisations", json={"name": "Démocratie Ouverte",
                                                           "description": "Association membre"}, headers=headers)
    assert response.status_code == 201, response.get_json()
    org_id = response.get_json()["id"]
    charter = client.get("/api/v1/charter").get_json()
    response = client.post("/api/v1/charter/signatures", json={"organisation_id": org_id, "sha256": charter["sha256"]},
                           headers=headers)
    assert response.status_code in (200, 201), response.get_json()
    response = client.post("/api/v1/events", json={**EVENT, "organiser_ids": [org_id]}, headers=headers)
    assert response.status_code == 201, response.get_json()
    event = response.get_json()
    with app.app_context():
        actor = RemoteActor(ap_id="https://lyon.example.org/actor", domain="lyon.example.org",
                            name="La Fabrique Commune", city="Lyon", actor_type="Organization",
                            inbox="https://lyon.example.org/inbox", is_halles_node=True,
                            document={"id": "https://lyon.example.org/actor", "type": "Organization"},
                            fetched_at=utcnow())
        db.session.add(actor)
        db.session.flush()
        db.session.add(Follow(actor_id=actor.id, direction="incoming", state="accepted",
                              activity_id="https://lyon.example.org/follows/1",
                              attestation={"url": "https://halles.example.org/charter", "version": "1.0",
                                           "sha256": charter["sha256"]}))
        db.session.commit()
        db.session.remove()
    return {"headers": headers, "organisation_id": org_id, "event": event}


def all_rows(url: str) -> dict[str, list[tuple]]:
    """Every row of every table (alembic_version included), in a stable order."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            names = sorted(inspect(connection).get_table_names())
            result = {}
            for name in names:
                rows = connection.execute(select(table(name, *[_column(c["name"]) for c in
                                                               inspect(connection).get_columns(name)]))).all()
                result[name] = sorted((tuple(row) for row in rows), key=repr)
            return result
    finally:
        engine.dispose()


def _column(name: str):
    from sqlalchemy import column

    return column(name)


def rows_by_key(url: str) -> dict[str, dict[Any, dict[str, Any]]]:
    """table -> primary key -> {column: value}, to check rows survive a schema upgrade."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            inspector = inspect(connection)
            result: dict[str, dict[Any, dict[str, Any]]] = {}
            for name in sorted(inspector.get_table_names()):
                columns = [c["name"] for c in inspector.get_columns(name)]
                key = inspector.get_pk_constraint(name).get("constrained_columns") or columns
                rows = connection.execute(select(table(name, *[_column(c) for c in columns]))).mappings().all()
                result[name] = {tuple(row[k] for k in key): dict(row) for row in rows}
            return result
    finally:
        engine.dispose()
