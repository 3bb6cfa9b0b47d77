"""Catch-up: pull what a peer published while we were away from its outbox, page by page, from
the last cursor we stored. Each activity carries its origin's proof, so it is verified like a
delivery and queued in the inbox (idempotent by activity id: nothing is applied twice)."""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import urlencode, urlsplit, urlunsplit

from flask import current_app
from sqlalchemy import select

from federation.errors import FederationError
from federation.proofs import verify_document
from federation.urls import same_origin
from node.common.timeutil import utcnow
from node.extensions import db
from node.fedi.handlers import actor_id
from node.fedi.inbox_store import store_verified
from node.fedi.keystore import resolve_key
from node.fedi.models import Follow, InboxItem, RemoteActor, RemoteServer
from node.fedi.outbox import now_aware
from node.fedi.transport import get_signed_json

log = logging.getLogger("halles.sync")
MAX_PAGES = 1000


class SyncError(Exception):
    pass


def _server(domain: str) -> RemoteServer:
    server = db.session.scalar(select(RemoteServer).where(RemoteServer.domain == domain))
    if server is None:
        server = RemoteServer(domain=domain)
        db.session.add(server)
        db.session.flush()
    return server


def _page_url(outbox: str, cursor: str | None) -> str:
    parts = urlsplit(outbox)
    query = urlencode({"after": cursor or "0"})
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def sync_actor(actor: RemoteActor) -> int:
    """Pull every page after our cursor. Returns the number of new activities queued."""
    if not actor.outbox:
        raise SyncError(f"{actor.ap_id} has no outbox")
    server = _server(actor.domain)
    url: str | None = _page_url(actor.outbox, server.sync_cursor)
    queued = 0
    for _ in range(MAX_PAGES):
        if url is None:
            break
        try:
            page = get_signed_json(url)
        except FederationError as exc:
            raise SyncError(f"cannot read {url}: {exc}") from exc
        if page.get("type") == "OrderedCollection" and "first" in page:
            first = page["first"]
            url = first if isinstance(first, str) else first.get("id") if isinstance(first, dict) else None
            continue
        for activity in page.get("orderedItems") or []:
            if isinstance(activity, dict) and _verified(activity):
                queued += _requeue_ignored_before_following(activity) or store_verified(
                    activity, actor_id(activity) or "")
        cursor = page.get("cursor") or page.get("halles:cursor")
        if isinstance(cursor, str | int):
            server.sync_cursor = str(cursor)
        db.session.commit()
        next_url = page.get("next")
        url = next_url if isinstance(next_url, str) else None
    server.synced_at = utcnow()
    db.session.commit()
    return queued


#: What the worker wrote on an activity of a node we did not follow (yet) when it arrived.
_NOT_FOLLOWED = "this node does not follow "


def _requeue_ignored_before_following(activity: dict) -> bool:
    """An activity pushed to us before our follow of its node was accepted was ignored, but its id is
    known: without this, catch-up (which runs once the follow is accepted) would take it for a
    duplicate and the event would never arrive. Its copy from the outbox is applied instead."""
    item = db.session.scalar(select(InboxItem).where(
        InboxItem.activity_id == activity["id"], InboxItem.state == "ignored",
        InboxItem.error.startswith(_NOT_FOLLOWED, autoescape=True)))
    if item is None:
        return False
    item.activity, item.state, item.error, item.processed_at = activity, "pending", None, None
    return True


def _verified(activity: dict) -> bool:
    actor = actor_id(activity)
    if actor is None or not isinstance(activity.get("id"), str):
        return False
    if not same_origin(activity["id"], actor):  # as the inbox refuses it (``inbox.authenticate``)
        log.warning("catch-up: dropping %s: it claims another origin than its actor %s", activity["id"], actor)
        return False
    result = verify_document(activity, resolve_key, now=now_aware(), expected_origin=actor)
    if not result.ok:
        log.warning("catch-up: dropping %s: %s", activity.get("id"), result.reason)
    return result.ok


def request_sync(actor: RemoteActor) -> None:
    """Ask the worker to catch up with this actor soon."""
    _server(actor.domain).synced_at = None


def sync_due() -> int:
    """Worker task: catch up with followed actors never synced or not synced for a while."""
    interval = timedelta(seconds=float(current_app.config.get("HALLES_SYNC_INTERVAL_SECONDS", 300)))
    rows = db.session.execute(
        select(RemoteActor, RemoteServer)
        .join(Follow, Follow.actor_id == RemoteActor.id)
        .outerjoin(RemoteServer, RemoteServer.domain == RemoteActor.domain)
        .where(Follow.direction == "outgoing", Follow.state == "accepted")
    ).all()
    done = 0
    for actor, server in rows:
        if server is not None and server.blocked:
            continue
        if server is not None and server.synced_at is not None and server.synced_at > utcnow() - interval:
            continue
        try:
            done += sync_actor(actor)
        except SyncError as exc:
            db.session.rollback()
            log.warning("catch-up with %s failed: %s", actor.ap_id, exc)
            # Try again next interval rather than hammering a server that is down.
            _server(actor.domain).synced_at = utcnow()
            db.session.commit()
    return done


def sync_all() -> dict[str, int | str]:
    """`halles sync`: catch up with every followed actor now."""
    report: dict[str, int | str] = {}
    actors = db.session.scalars(
        select(RemoteActor)
        .join(Follow, Follow.actor_id == RemoteActor.id)
        .where(Follow.direction == "outgoing", Follow.state == "accepted")
    ).all()
    for actor in actors:
        try:
            report[actor.ap_id] = sync_actor(actor)
        except SyncError as exc:
            db.session.rollback()
            report[actor.ap_id] = f"failed: {exc}"
    return report
