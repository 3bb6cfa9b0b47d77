"""Rows as the federation layer stores them after receiving another node's objects, for web tests that
need remote events and directory entries without running a second node (the browser tests do)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask

LYON = "http://lyon.test/actor"
MARSEILLE = "http://marseille.test/actor"


@dataclass
class Remote:
    public_uuid: str
    network_uuid: str
    reshared_uuid: str
    registration_url: str
    origin_id: int


def add_remote(app: Flask, *, days: int = 3) -> Remote:
    from node.common.timeutil import utcnow
    from node.events.models import Event
    from node.events.services import expand_occurrences
    from node.extensions import db
    from node.fedi.models import Follow, RemoteActor, RemoteOrganisation

    with app.app_context():
        lyon = RemoteActor(ap_id=LYON, domain="lyon.test", name="La Fabrique Commune", city="Lyon",
                           actor_type="Organization", inbox="http://lyon.test/inbox", is_halles_node=True, document={})
        marseille = RemoteActor(ap_id=MARSEILLE, domain="marseille.test", name="Le Comptoir des Quartiers",
                                city="Marseille", actor_type="Organization", inbox="http://marseille.test/inbox",
                                is_halles_node=True, document={})
        db.session.add_all([lyon, marseille])
        db.session.flush()
        db.session.add_all([
            Follow(actor_id=lyon.id, direction="incoming", state="accepted", activity_id="http://lyon.test/f/1",
                   attestation={"url": "http://paris.test/charter.txt", "version": "1.0", "sha256": "0" * 64}),
            Follow(actor_id=lyon.id, direction="outgoing", state="accepted", activity_id="http://paris.test/f/1"),
            Follow(actor_id=marseille.id, direction="outgoing", state="accepted",
                   activity_id="http://paris.test/f/2"),
        ])
        start = (utcnow() + timedelta(days=days)).replace(hour=17, minute=0, second=0)

        def event(title: str, visibility: str, **extra) -> Event:
            event_uuid = str(uuid.uuid4())
            row = Event(
                uuid=event_uuid, ap_id=f"http://lyon.test/events/{event_uuid}", title=title,
                description="Un débat ouvert sur la gestion publique de l'eau.", starts_at=start,
                ends_at=start + timedelta(hours=2), timezone="Europe/Paris", category="debate", language="fr",
                accessibility={"step_free": True, "sign_language": True}, capacity=40, visibility=visibility,
                location_kind="place", place_name="La Fabrique Commune", address="12 rue Pierre Dupont",
                postal_code="69001", city="Lyon", latitude=45.77, longitude=4.83, origin_actor_id=lyon.id,
                registration_url=f"http://lyon.test/events/{event_uuid}", remote_object={},
                created_at=datetime(2026, 1, 1), updated_at=datetime(2026, 1, 1), **extra,
            )
            db.session.add(row)
            db.session.flush()
            expand_occurrences(row)
            return row

        public = event("Débat citoyen : l'eau, un bien commun", "public")
        network = event("Réunion du réseau lyonnais (réservée au réseau)", "network")
        reshared = event("Festival des quartiers (partagé)", "public", shared_by_actor_id=marseille.id)
        db.session.add(RemoteOrganisation(
            ap_id="http://lyon.test/organisations/collectif-lyon-commun", origin_actor_id=lyon.id,
            name="Collectif Lyon Commun", updated_at=datetime(2026, 1, 1),
            fields={"name": "Collectif Lyon Commun", "description": "Habitants en action.", "city": "Lyon",
                    "contact_email": "reseau-seulement@lyon-commun.example"},
        ))
        db.session.commit()
        return Remote(public.uuid, network.uuid, reshared.uuid, public.registration_url, lyon.id)
