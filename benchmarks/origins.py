"""Remote third-places for the benchmarks: keys, actor documents, and events signed exactly as a Halles
node signs them (``event_to_object`` + FEP-8b32 proof on the object and on the activity, RFC 9421 HTTP
signature with the RSA key), without running their servers."""

from __future__ import annotations

import json
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from federation.httpsig import sign_request
from federation.keys import KeyRecord, generate_ed25519, generate_rsa
from federation.proofs import sign_document
from federation.vocab import DATA_INTEGRITY_CONTEXT
from node.fedi.converters import event_to_object
from node.fedi.identity import AS_CONTEXT, NodeIdentity, actor_document

CITIES = ("Paris", "Lyon", "Marseille", "Lille", "Nantes", "Bordeaux", "Toulouse", "Rennes", "Grenoble", "Dijon")
TITLES = ("Débat citoyen", "Atelier réparation", "Projection-débat", "Portes ouvertes", "Assemblée de quartier",
          "Fresque du climat", "Concert solidaire", "Formation à la facilitation", "Exposition photo", "Festival")

#: What a small event carries (Gancio or Mastodon-sized): enough for every listing filter.
COMPACT_FIELDS = ("@context", "id", "type", "attributedTo", "name", "content", "startTime", "endTime", "timezone",
                  "published", "updated", "to", "category", "location")


def _shared_keys() -> tuple[Any, Any]:
    # RSA generation costs ~0.1 s a key; origins of a benchmark may share one pair (each still has its
    # own actor, key ids and documents, which is what the receiver sees).
    global _KEYS
    if _KEYS is None:
        _KEYS = (generate_rsa(), generate_ed25519())
    return _KEYS


_KEYS: tuple[Any, Any] | None = None


@dataclass
class Origin:
    """A remote node: its identity (keys, URLs) and the events it publishes."""

    identity: NodeIdentity
    counter: int = 0
    published: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def make(cls, index: int, *, base: str | None = None, own_keys: bool = False) -> Origin:
        rsa_key, ed_key = (generate_rsa(), generate_ed25519()) if own_keys else _shared_keys()
        city = CITIES[index % len(CITIES)]
        identity = NodeIdentity(
            base_url=base or f"https://tiers-lieu-{index}.example",
            name=f"Tiers-lieu {index} de {city}",
            city=city,
            address=f"{index} place de la Mairie",
            rsa_key=rsa_key,
            ed25519_key=ed_key,
        )
        return cls(identity)

    @property
    def actor_url(self) -> str:
        return self.identity.actor_url

    def actor_document(self) -> dict[str, Any]:
        charter = {"url": f"{self.identity.base_url}/charter", "version": "1.0", "sha256": "0" * 64}
        return actor_document(self.identity, charter)

    def key_records(self) -> dict[str, KeyRecord]:
        ident = self.identity
        return {
            ident.rsa_key_id: KeyRecord(ident.rsa_key_id, ident.rsa_key.public_key(), ident.actor_url),
            ident.ed25519_key_id: KeyRecord(ident.ed25519_key_id, ident.ed25519_key.public_key(), ident.actor_url),
        }

    # --- objects ----------------------------------------------------------------------------------

    def event_object(self, number: int, *, updated: datetime, start: datetime, city: str | None = None,
                     description: str | None = None, compact: bool = True) -> dict[str, Any]:
        """An AS2 Event as a Halles node publishes it. ``compact`` keeps the fields most platforms send
        (an activity of about 1.5 KB with its two proofs); otherwise every field Halles sends (5.5 KB)."""
        ident = self.identity
        event_uuid = uuid.UUID(int=zlib.crc32(ident.base_url.encode()) << 64 | number)
        event = SimpleNamespace(
            ap_id=f"{ident.base_url}/events/{event_uuid}",
            title=f"{TITLES[number % len(TITLES)]} n°{number}",
            description=description if description is not None else (
                "Entrée libre, ouvert à toutes et à tous.\n\nAccueil à partir de 18 h 30, buvette associative."),
            starts_at=start, ends_at=start + timedelta(hours=2), timezone="Europe/Paris",
            created_at=updated.replace(tzinfo=None), updated_at=updated.replace(tzinfo=None),
            visibility="public", status="confirmed", category="debate", tags=["citoyenneté"], language="fr",
            price_cents=0, accessibility={"step_free": True}, capacity=None, rrule=None, exdates=[],
            image_url=None, location_kind="place", online_url=None, place_name=ident.name,
            address=ident.address, postal_code="75011", city=city or ident.city, latitude=None, longitude=None,
        )
        obj = event_to_object(event, actor_url=ident.actor_url, followers_url=ident.followers_url)
        obj["updated"] = updated.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if compact:
            obj = {key: obj[key] for key in COMPACT_FIELDS if key in obj}
            obj["@context"] = [AS_CONTEXT, DATA_INTEGRITY_CONTEXT]
            del obj["location"]["address"]["streetAddress"]
        return obj

    def signed_activity(self, kind: str, obj: dict[str, Any], *, now: datetime) -> dict[str, Any]:
        """``kind`` (Create/Update) of ``obj``, object and activity both carrying this origin's proof."""
        ident = self.identity
        created = now.replace(microsecond=0)
        signed_obj = obj if "proof" in obj else sign_document(obj, ident.ed25519_key, ident.ed25519_key_id,
                                                              created=created)
        self.counter += 1
        activity = {
            "@context": obj.get("@context", AS_CONTEXT),
            "id": f"{ident.base_url}/activities/{uuid.uuid4()}",
            "type": kind,
            "actor": ident.actor_url,
            "object": signed_obj,
            "published": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "to": ["https://www.w3.org/ns/activitystreams#Public"],
            "cc": [ident.followers_url],
        }
        return sign_document(activity, ident.ed25519_key, ident.ed25519_key_id, created=created)

    def signed_post(self, inbox_url: str, activity: dict[str, Any], *, now: datetime) -> tuple[bytes, dict[str, str]]:
        """The body and headers of a POST of ``activity`` to ``inbox_url`` (RFC 9421, RSA key)."""
        body = json.dumps(activity, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/activity+json"}
        headers.update(sign_request("POST", inbox_url, headers, body, self.identity.rsa_key,
                                    self.identity.rsa_key_id, flavour="rfc9421", now=now))
        return body, headers


def utc_now() -> datetime:
    return datetime.now(UTC)
