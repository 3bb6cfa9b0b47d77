"""Charter-gated peering and plain follows, as services the CLI, API and admin pages share.

A node asks to peer with a Follow carrying an attestation of the other node's current charter
(URL, version, SHA-256, plus a reference to its own charter so the admin can read the diff); the
other node's admin approves (Accept) or refuses (Reject). Plain follows (importing a Mobilizon
group's events, say) carry no attestation."""

from __future__ import annotations

import difflib
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, has_app_context
from sqlalchemy import event, inspect, select, update
from sqlalchemy.orm import Session

from federation.errors import FetchError
from node.common.errors import Conflict, InvalidInput, NotFound
from node.common.timeutil import utcnow
from node.extensions import db
from node.fedi import outbox
from node.fedi.http import allow_private, fetch_document
from node.fedi.identity import load_identity
from node.fedi.keystore import ActorError, domain_of, get_actor
from node.fedi.models import Delivery, Follow, RemoteActor, RemoteServer
from node.fedi.remote import purge_actor


@dataclass
class PeerView:
    actor: RemoteActor
    incoming: Follow | None
    outgoing: Follow | None
    attests_current: bool
    blocked: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor.ap_id,
            "name": self.actor.name,
            "city": self.actor.city,
            "domain": self.actor.domain,
            "halles_node": self.actor.is_halles_node,
            "incoming": self.incoming.state if self.incoming else None,
            "outgoing": self.outgoing.state if self.outgoing else None,
            "attestation": self.incoming.attestation if self.incoming else None,
            "attests_current_charter": self.attests_current,
            "blocked": self.blocked,
        }


def resolve_actor(target: str, *, refresh: bool = True) -> RemoteActor:
    """An actor from a URL (actor URL or a node's home page) or an ``acct:user@host`` handle.
    Fetched afresh by default: a peering request must attest the charter the node shows *now*."""
    target = target.strip()
    if target.startswith("acct:") or ("@" in target and "://" not in target):
        return get_actor(webfinger(target.removeprefix("acct:").lstrip("@")), refresh=refresh)
    if urlsplit(target).scheme not in ("http", "https"):
        raise InvalidInput(f"{target!r} is neither a URL nor an acct: handle")
    if urlsplit(target).path in ("", "/"):
        # A node's home page: its actor lives at /actor (Halles); other servers answer WebFinger.
        try:
            return get_actor(target.rstrip("/") + "/actor", refresh=refresh)
        except ActorError:
            pass
    try:
        return get_actor(target, refresh=refresh)
    except ActorError as first_error:
        base = target.rstrip("/")
        if not base.endswith("/actor"):
            try:
                return get_actor(base + "/actor", refresh=refresh)
            except ActorError:
                pass
        raise InvalidInput(str(first_error)) from None


def webfinger(handle: str) -> str:
    user, _, host = handle.partition("@")
    if not user or not host:
        raise InvalidInput(f"{handle!r} is not a user@host handle")
    schemes = ["https", "http"] if allow_private() else ["https"]
    last_error: Exception | None = None
    for scheme in schemes:
        url = f"{scheme}://{host}/.well-known/webfinger?resource=acct:{user}@{host}"
        try:
            document = fetch_document(url)
        except FetchError as exc:
            last_error = exc
            continue
        for link in document.get("links") or []:
            if (
                isinstance(link, dict)
                and link.get("rel") == "self"
                and str(link.get("type", "")).split(";")[0] in ("application/activity+json", "application/ld+json")
                and isinstance(link.get("href"), str)
            ):
                return link["href"]
        raise InvalidInput(f"WebFinger for {handle} lists no ActivityPub actor")
    raise InvalidInput(f"cannot resolve {handle} with WebFinger: {last_error}")


def _follow(actor: RemoteActor, direction: str) -> Follow | None:
    return db.session.scalar(select(Follow).where(Follow.actor_id == actor.id, Follow.direction == direction))


def _inbox(actor: RemoteActor) -> str:
    inbox = actor.inbox or actor.shared_inbox
    if not inbox:
        raise InvalidInput(f"{actor.ap_id} has no inbox")
    return inbox


def _check_not_blocked(actor: RemoteActor) -> None:
    if db.session.scalar(select(RemoteServer.blocked).where(RemoteServer.domain == actor.domain)):
        raise Conflict(f"{actor.domain} is blocked; unblock it first with `halles peer unblock {actor.domain}`")


def request_peering(target: str) -> RemoteActor:
    """Send a Follow with the charter attestation. Does not commit."""
    actor = resolve_actor(target)
    _check_not_blocked(actor)
    charter = actor.document.get("charter")
    if not isinstance(charter, dict) or not charter.get("sha256"):
        raise InvalidInput(f"{actor.ap_id} publishes no charter: it is not a Halles node (use `halles follow`)")
    attestation = {
        "url": charter.get("url"),
        "version": charter.get("version"),
        "sha256": charter.get("sha256"),
        "ownCharter": outbox.charter_reference(),
        "attestedAt": outbox.now_aware().strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return _send_follow(actor, extra={"attestation": attestation})


def follow(target: str) -> RemoteActor:
    """Follow any ActivityPub actor to import its events. Does not commit."""
    actor = resolve_actor(target)
    _check_not_blocked(actor)
    return _send_follow(actor, extra=None)


def _send_follow(actor: RemoteActor, extra: dict[str, Any] | None) -> RemoteActor:
    if actor.ap_id == load_identity().actor_url:
        raise InvalidInput("a node cannot follow itself")
    entry = outbox.deliver_to("Follow", actor.ap_id, _inbox(actor), extra=extra)
    row = _follow(actor, "outgoing")
    if row is None:
        row = Follow(actor_id=actor.id, direction="outgoing", activity_id=entry.activity_id)
        db.session.add(row)
    if row.state != "accepted":
        row.state = "pending"
    row.activity_id = entry.activity_id
    row.attestation = (extra or {}).get("attestation")
    return actor


def _known_actor(target: str) -> RemoteActor:
    target = target.strip().rstrip("/")
    actor = db.session.scalar(
        select(RemoteActor).where((RemoteActor.ap_id == target) | (RemoteActor.ap_id == target + "/actor"))
    )
    if actor is None:
        domain = domain_of(target) if "://" in target else target.lower()
        actor = db.session.scalar(select(RemoteActor).where(RemoteActor.domain == domain).order_by(RemoteActor.id))
    if actor is None:
        raise NotFound(f"no known peer or follower matches {target!r}; see `halles peer list`")
    return actor


def _answer(target: str, accept: bool) -> Follow:
    actor = _known_actor(target)
    row = _follow(actor, "incoming")
    if row is None or row.state == "removed":
        raise NotFound(f"{actor.ap_id} has not asked to peer with this node")
    row.state = "accepted" if accept else "rejected"
    row.decided_at = utcnow()
    reference = {"id": row.activity_id, "type": "Follow", "actor": actor.ap_id, "object": load_identity().actor_url}
    outbox.deliver_to("Accept" if accept else "Reject", reference, _inbox(actor))
    return row


def approve(target: str) -> Follow:
    return _answer(target, True)


def refuse(target: str) -> Follow:
    return _answer(target, False)


def remove(target: str) -> RemoteActor:
    """End the relation both ways: Undo our follow, Reject theirs, forget what they published."""
    actor = _known_actor(target)
    identity = load_identity()
    outgoing, incoming = _follow(actor, "outgoing"), _follow(actor, "incoming")
    if outgoing is not None and outgoing.state != "removed":
        undo = {"id": outgoing.activity_id, "type": "Follow", "actor": identity.actor_url, "object": actor.ap_id}
        outbox.deliver_to("Undo", undo, _inbox(actor))
        outgoing.state = "removed"
    if incoming is not None and incoming.state != "removed":
        reference = {"id": incoming.activity_id, "type": "Follow", "actor": actor.ap_id, "object": identity.actor_url}
        outbox.deliver_to("Reject", reference, _inbox(actor))
        incoming.state = "removed"
    purge_actor(actor)
    return actor


def block(domain: str) -> int:
    """Drop and refuse everything from a domain. Returns how many actors were purged."""
    domain = domain.strip().lower()
    if "://" in domain:
        domain = domain_of(domain)
    if not domain:
        raise InvalidInput("give a domain, e.g. spam.example or 127.0.0.1:5003")
    server = db.session.scalar(select(RemoteServer).where(RemoteServer.domain == domain))
    if server is None:
        server = RemoteServer(domain=domain)
        db.session.add(server)
    server.blocked = True
    server.blocked_at = utcnow()
    actors = db.session.scalars(select(RemoteActor).where(RemoteActor.domain == domain)).all()
    for actor in actors:
        db.session.execute(update(Follow).where(Follow.actor_id == actor.id).values(state="removed"))
        purge_actor(actor)
    db.session.execute(update(Delivery).where(Delivery.domain == domain, Delivery.state == "pending").values(
        state="dead", last_error="domain blocked"))
    return len(actors)


def unblock(domain: str) -> None:
    server = db.session.scalar(select(RemoteServer).where(RemoteServer.domain == domain.strip().lower()))
    if server is None or not server.blocked:
        raise NotFound(f"{domain} is not blocked")
    server.blocked = False


#: How long a process keeps its list of partner domains: a change made by another process (a web
#: process approving a peering, the worker receiving an Accept) counts within this time; one made by
#: this process counts at once (``_forget_partners_after_commit``).
PARTNER_DOMAINS_SECONDS = 30.0


class PartnerDomains:
    """The domains of the servers this node follows (accepted) or whose charter-attested peering
    request it approved: the inbox gives them a budget of their own (``HALLES_RATE_LIMIT_INBOX_PARTNERS``).
    A plain follower (any fediverse account following the node) is not one: following costs an
    attacker nothing. Read again every ``PARTNER_DOMAINS_SECONDS`` (one per app), and after this
    process commits a change to a follow."""

    def __init__(self) -> None:
        self._domains: frozenset[str] | None = None
        self._until = 0.0
        #: Bumped by ``forget``: a read that started before a change was committed is not kept.
        self._generation = 0
        self._lock = threading.Lock()

    def current(self) -> frozenset[str]:
        domains = self._domains
        if domains is not None and time.monotonic() < self._until:
            return domains
        generation = self._generation
        rows = select(RemoteActor.domain, Follow.direction, Follow.attestation).join(
            Follow, Follow.actor_id == RemoteActor.id).where(Follow.state == "accepted")
        with db.engine.connect() as connection:
            domains = frozenset(domain for domain, direction, attestation in connection.execute(rows)
                                if direction == "outgoing" or attestation is not None)
        with self._lock:
            if generation == self._generation:
                self._domains, self._until = domains, time.monotonic() + PARTNER_DOMAINS_SECONDS
        return domains

    def forget(self) -> None:
        with self._lock:
            self._generation += 1
            self._domains = None


def partner_domains() -> PartnerDomains:
    partners = current_app.extensions.get("halles_partner_domains")
    if partners is None:
        partners = current_app.extensions.setdefault("halles_partner_domains", PartnerDomains())
    return partners


def is_partner_domain(domain: str) -> bool:
    """Whether ``domain`` is one of this node's partners (``PartnerDomains``)."""
    return bool(domain) and domain in partner_domains().current()


@event.listens_for(Follow, "after_insert")
@event.listens_for(Follow, "after_update")
@event.listens_for(Follow, "after_delete")
def _note_follow_change(_mapper, _connection, follow: Follow) -> None:
    session = inspect(follow).session
    if session is not None:
        session.info["halles_follows_changed"] = True


@event.listens_for(Session, "do_orm_execute")
def _note_bulk_follow_change(state) -> None:
    """A bulk ``update(Follow)`` or ``delete(Follow)`` (a domain blocked, an actor gone, an inbox gone)
    runs no per-object event: noted here, so that its commit also makes the partners be read again."""
    if (state.is_update or state.is_delete) and state.bind_mapper is not None and state.bind_mapper.class_ is Follow:
        state.session.info["halles_follows_changed"] = True


@event.listens_for(Session, "after_commit")
def _forget_partners_after_commit(session: Session) -> None:
    if session.info.pop("halles_follows_changed", False) and has_app_context():
        partner_domains().forget()


@event.listens_for(Session, "after_soft_rollback")
def _keep_partners_after_rollback(session: Session, _previous) -> None:
    session.info.pop("halles_follows_changed", None)


def list_peers() -> list[PeerView]:
    charter = outbox.charter_reference()
    blocked = set(db.session.scalars(select(RemoteServer.domain).where(RemoteServer.blocked.is_(True))))
    views = []
    actor_ids = select(Follow.actor_id).distinct()
    for actor in db.session.scalars(select(RemoteActor).where(RemoteActor.id.in_(actor_ids)).order_by(RemoteActor.id)):
        incoming, outgoing = _follow(actor, "incoming"), _follow(actor, "outgoing")
        attests = incoming is not None and incoming.attestation is not None and outbox.attests_current_charter(
            incoming, charter)
        views.append(PeerView(actor, incoming, outgoing, attests, actor.domain in blocked))
    return views


def charter_diff(target: str) -> str:
    """Unified diff between the requester's own charter and ours, for the admin deciding a request."""
    from node.charters.services import current_version

    actor = _known_actor(target)
    incoming = _follow(actor, "incoming")
    theirs_ref = (incoming.attestation or {}).get("ownCharter") if incoming else None
    ours = current_version()
    if not theirs_ref or not isinstance(theirs_ref, dict) or not theirs_ref.get("url"):
        return "(the request carries no reference to the requester's own charter)"
    try:
        from node.fedi.transport import signed_send

        response, result = signed_send("GET", theirs_ref["url"], accept="text/plain")
        theirs = response.text if response is not None and result.ok else ""
    except FetchError as exc:
        return f"(cannot fetch {theirs_ref['url']}: {exc})"
    return "".join(
        difflib.unified_diff(
            (ours.body if ours else "").splitlines(keepends=True),
            theirs.splitlines(keepends=True),
            fromfile=f"our charter {ours.version if ours else '-'}",
            tofile=f"{actor.name} charter {theirs_ref.get('version')}",
        )
    ) or "(identical charters)"
