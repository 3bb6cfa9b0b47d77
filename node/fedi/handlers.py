"""One handler per activity type, in a registry (like Mastodon's activity factory). The worker
calls ``apply(item)`` for each stored inbox item; handlers return a short outcome for the log and
raise ``RefusedObject`` to mark the item ignored with a reason. Unknown types are ignored, never an
error."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from federation.urls import same_origin
from node.common.timeutil import utcnow
from node.extensions import db
from node.fedi import outbox
from node.fedi.identity import load_identity
from node.fedi.keystore import ActorError, get_actor
from node.fedi.models import Follow, OutboxEntry, RemoteActor
from node.fedi.remote import (
    Lookups,
    RefusedObject,
    StaleDeletion,
    delete_remote_object,
    forget_actor,
    lookups,
    upsert_remote_event,
    upsert_remote_organisation,
)

log = logging.getLogger("halles.inbox")

Handler = Callable[[dict[str, Any], RemoteActor], str]
HANDLERS: dict[str, Handler] = {}


def handles(*types: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for activity_type in types:
            HANDLERS[activity_type] = handler
        return handler

    return register


def object_id(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    return None


def actor_id(activity: dict[str, Any]) -> str | None:
    return object_id(activity.get("actor"))


def apply(activity: dict[str, Any]) -> str:
    """Apply a verified activity. Returns the outcome; raises RefusedObject when it cannot apply."""
    handler = HANDLERS.get(str(activity.get("type")))
    if handler is None:
        return "ignored: unsupported activity type"
    ap_id = actor_id(activity)
    if ap_id is None:
        raise RefusedObject("activity without actor")
    known = lookups()
    try:
        actor = known.actor(ap_id)
    except ActorError as exc:
        raise RefusedObject(str(exc)) from exc
    if actor.domain in known.blocked_domains():
        return "ignored: domain blocked"
    return handler(activity, actor)


def applies_without_fetching(activity: dict[str, Any], known: Lookups) -> bool:
    """An activity ``apply`` handles from what the database holds, without any fetch: a Create or
    Update of an embedded object by a known actor (and, for an event attributed to another actor of
    its server, that actor known too). The worker applies runs of these in one transaction."""
    if activity.get("type") not in ("Create", "Update"):
        return False
    ap_id = actor_id(activity)
    obj = activity.get("object")
    if ap_id is None or not isinstance(obj, dict) or known.known_actor(ap_id) is None:
        return False
    attributed = _attributed_to(obj)
    if attributed and attributed != ap_id and same_origin(attributed, ap_id):
        return known.known_actor(attributed) is not None
    return True


def _attributed_to(obj: dict[str, Any]) -> str | None:
    attributed = obj.get("attributedTo")
    return object_id(attributed[0] if isinstance(attributed, list) and attributed else attributed)


def _follow_row(actor: RemoteActor, direction: str) -> Follow | None:
    return db.session.scalar(select(Follow).where(Follow.actor_id == actor.id, Follow.direction == direction))


@handles("Follow")
def on_follow(activity: dict[str, Any], actor: RemoteActor) -> str:
    identity = load_identity()
    if object_id(activity.get("object")) != identity.actor_url:
        return "ignored: follow of another actor"
    attestation = activity.get("attestation") or activity.get("halles:attestation")
    attestation = attestation if isinstance(attestation, dict) else None
    follow = _follow_row(actor, "incoming")
    if follow is None:
        follow = Follow(actor_id=actor.id, direction="incoming", activity_id=activity["id"])
        db.session.add(follow)
    follow.activity_id = activity["id"]
    follow.attestation = _clean_attestation(attestation) if attestation else None
    inbox = actor.inbox or actor.shared_inbox
    if attestation is None:
        # Any fediverse account may follow the public agenda: accepted at once.
        follow.state = "accepted"
        follow.decided_at = utcnow()
        if inbox:
            outbox.deliver_to("Accept", _follow_reference(activity), inbox)
        return "follower accepted"
    if follow.state == "accepted":
        # An approved peer re-attesting (new charter version): keep the peering, refresh the attestation.
        if inbox:
            outbox.deliver_to("Accept", _follow_reference(activity), inbox)
        return "peer attestation refreshed"
    follow.state = "pending"
    return "peering request waiting for an admin"


def _clean_attestation(attestation: dict[str, Any]) -> dict[str, Any]:
    keep = ("url", "version", "sha256", "ownCharter", "attestedAt")
    return {key: attestation[key] for key in keep if key in attestation}


def _follow_reference(activity: dict[str, Any]) -> dict[str, Any]:
    return {"id": activity["id"], "type": "Follow", "actor": actor_id(activity), "object": activity.get("object")}


@handles("Accept", "Reject")
def on_answer(activity: dict[str, Any], actor: RemoteActor) -> str:
    follow = _follow_row(actor, "outgoing")
    answered = object_id(activity.get("object"))
    if follow is None or (answered and answered != follow.activity_id):
        return "ignored: no matching follow request"
    follow.state = "accepted" if activity["type"] == "Accept" else "rejected"
    follow.decided_at = utcnow()
    if follow.state == "accepted":
        from node.fedi.sync import request_sync

        request_sync(actor)  # pull what they published before we followed
    return f"follow {follow.state}"


@handles("Undo")
def on_undo(activity: dict[str, Any], actor: RemoteActor) -> str:
    undone = activity.get("object")
    undone_type = undone.get("type") if isinstance(undone, dict) else None
    if undone_type == "Announce":
        return _undo_announce(undone, actor)
    follow = _follow_row(actor, "incoming")
    if follow is not None and (undone_type == "Follow" or object_id(undone) == follow.activity_id):
        follow.state = "removed"
        follow.decided_at = utcnow()
        return "follower removed"
    return "ignored: nothing to undo"


@handles("Unfollow")
def on_unfollow(activity: dict[str, Any], actor: RemoteActor) -> str:
    """Gancio's own word for Undo(Follow) (server/federation/helpers.js ``unfollowActor``)."""
    follow = _follow_row(actor, "incoming")
    if follow is None or object_id(activity.get("object")) != load_identity().actor_url:
        return "ignored: nothing to undo"
    follow.state = "removed"
    follow.decided_at = utcnow()
    return "follower removed"


def _undo_announce(announce: dict[str, Any], actor: RemoteActor) -> str:
    """A re-share withdrawn (Mastodon unboost, Mobilizon unannounce). A copy that only reached us through
    this re-share goes; one we also get from its origin (we follow it) just loses the credit."""
    from node.events.models import Event

    target = object_id(announce.get("object"))
    event = db.session.scalar(select(Event).where(Event.ap_id == target)) if target else None
    if event is None or event.shared_by_actor_id != actor.id:
        return "ignored: nothing to undo"
    follows_origin = db.session.scalar(
        select(Follow.id).where(Follow.actor_id == event.origin_actor_id, Follow.direction == "outgoing",
                                Follow.state == "accepted"))
    if follows_origin is not None:
        event.shared_by_actor_id = None
        return "re-share withdrawn"
    db.session.delete(event)
    return "re-shared event removed"


def _is_event(obj: Any) -> bool:
    kind = obj.get("type") if isinstance(obj, dict) else None
    return kind == "Event" or (isinstance(kind, list) and "Event" in kind)


def _event_origin(obj: dict[str, Any], actor: RemoteActor) -> RemoteActor:
    """The actor an event belongs to: its ``attributedTo`` when that is another actor of the sender's
    server (a Mobilizon member creates the group's event), else the sender."""
    attributed = _attributed_to(obj)
    if attributed and attributed != actor.ap_id and same_origin(attributed, actor.ap_id):
        try:
            return lookups().actor(attributed)
        except ActorError:
            return actor
    return actor


def _follows_server_of(actor: RemoteActor) -> bool:
    """This node follows (accepted) the actor or another actor of its server: a Mobilizon group's
    events come from its members. Events are imported from what the node chose to follow, never
    pushed into its listings by any account that can sign a request."""
    return actor.domain in lookups().followed_domains()


def _held(object_url: str) -> bool:
    return lookups().event(object_url) is not None


@handles("Create", "Update")
def on_create_or_update(activity: dict[str, Any], actor: RemoteActor) -> str:
    obj = activity.get("object")
    if not isinstance(obj, dict):
        return "ignored: object is not embedded"
    if _is_event(obj) and not _follows_server_of(actor) and not _held(str(obj.get("id"))):
        return f"ignored: this node does not follow {actor.ap_id}"
    if _is_event(obj):
        outcome = upsert_remote_event(obj, _event_origin(obj, actor))
    elif obj.get("type") == "Organization":
        outcome = upsert_remote_organisation(obj, actor)
    else:
        return f"ignored: {obj.get('type')} objects are not stored"
    _forward_if_reshared(activity, obj["id"])
    return outcome


@handles("Delete")
def on_delete(activity: dict[str, Any], actor: RemoteActor) -> str:
    target = object_id(activity.get("object"))
    if target is None:
        raise RefusedObject("Delete without object")
    if target == actor.ap_id:
        forget_actor(actor)
        return "actor purged"
    try:
        removed = delete_remote_object(target, actor, deleted_at=_deleted_time(activity))
    except StaleDeletion as exc:
        return f"ignored: {exc}"
    _forward_if_reshared(activity, target)
    return f"deleted {removed} object(s)"


def _deleted_time(activity: dict[str, Any]):
    from node.fedi.converters import ConversionError, parse_time

    obj = activity.get("object")
    for value in ((obj.get("deleted") if isinstance(obj, dict) else None), activity.get("published")):
        if isinstance(value, str):
            try:
                return parse_time(value, "deleted")
            except ConversionError:
                continue
    return None


@handles("Announce")
def on_announce(activity: dict[str, Any], actor: RemoteActor) -> str:
    """A re-share. An embedded object carrying its origin's proof is taken as is (the inbox verified
    the proof). Anything else -- a URL, or an embedded copy without proof such as a Mobilizon group's
    announce of its own event -- is fetched from its own URL, so its origin vouches for it."""
    from node.fedi import compat

    obj = activity.get("object")
    target = object_id(obj)
    if target is None:
        raise RefusedObject("Announce without object")
    if not _follows_server_of(actor):
        return f"ignored: this node does not follow {actor.ap_id}"
    if not (isinstance(obj, dict) and "proof" in obj):
        embedded = obj if isinstance(obj, dict) else None
        try:
            obj = compat.fetch_object(target)
        except compat.Gone:
            return _announced_object_gone(target, actor)
        except Exception as exc:  # noqa: BLE001 - any failure: we cannot re-share what we cannot read
            if embedded is not None and same_origin(target, actor.ap_id):
                obj = embedded  # the sender's own object, vouched for by its signature (FEP-fe34)
            else:
                raise RefusedObject(f"cannot fetch the announced object: {exc}") from exc
    if not _is_event(obj):
        return "ignored: only events are re-shared"
    origin_url = object_id(obj.get("attributedTo")[0] if isinstance(obj.get("attributedTo"), list)
                           and obj.get("attributedTo") else obj.get("attributedTo")) or ""
    if not same_origin(origin_url, target):
        raise RefusedObject(f"announced object {target} is attributed to another origin ({origin_url})")
    try:
        origin = get_actor(origin_url)
    except ActorError as exc:
        raise RefusedObject(str(exc)) from exc
    if origin.ap_id == load_identity().actor_url:
        return "ignored: our own event"
    return upsert_remote_event(obj, origin, shared_by=actor if origin.id != actor.id else None)


def _announced_object_gone(target: str, actor: RemoteActor) -> str:
    """Mobilizon relays a deleted group event as an Announce of it: the origin answering 404/410 is how
    we learn it is gone. Only the origin's server may make us delete it."""
    if not same_origin(target, actor.ap_id):
        return "ignored: the announced object no longer exists"
    removed = delete_remote_object(target, actor)
    return f"deleted {removed} object(s)" if removed else "ignored: the announced object no longer exists"


def _forward_if_reshared(activity: dict[str, Any], target: str) -> None:
    """We re-shared this object: pass the origin's signed Update/Delete on to our own audience."""
    if "proof" not in activity:
        return
    announce = lookups().last_announce(target)
    if announce is None:
        return
    if db.session.scalar(select(OutboxEntry.id).where(OutboxEntry.activity_id == activity["id"])) is not None:
        return
    outbox.record(activity, audience=announce.audience, object_id=target)
