"""What a local change sends to the network. Registered on the domains' change hooks, so every
create/update/cancel/delete of an event or organisation writes its activities in the same
transaction (see outbox.py)."""

from __future__ import annotations

from typing import Any

from flask import current_app

from node.fedi import outbox
from node.fedi.converters import EVENT_CONTEXT, event_to_object
from node.fedi.identity import load_identity

#: Event visibility -> outbox audience; ``members`` events never leave the node.
EVENT_AUDIENCE = {"public": "public", "network": "network"}


def _previous_audience(object_id: str, audiences: tuple[str, ...] = outbox.AUDIENCES) -> str | None:
    last = outbox.last_published(object_id, audiences)
    if last is None or last.activity_type == "Delete":
        return None
    return last.audience


def on_event_change(action: str, event: Any) -> None:
    if event.is_remote:
        return
    identity = load_identity()
    audience = None if action == "delete" else EVENT_AUDIENCE.get(event.visibility)
    previous = _previous_audience(event.ap_id)
    if audience is None:
        if previous is not None:
            outbox.publish("Delete", outbox.tombstone_object(event.ap_id, "Event"), audience=previous,
                           object_id=event.ap_id)
        if action == "delete":
            outbox.add_tombstone(event.ap_id, "Event")
        return
    obj = event_to_object(event, actor_url=identity.actor_url, followers_url=identity.followers_url,
                          remaining=_remaining(event))
    obj["updated"] = outbox.publication_stamp()
    outbox.publish("Create" if previous is None else "Update", obj, audience=audience, object_id=event.ap_id)
    if previous == "public" and audience == "network":
        # Narrowed from public to network: everyone who is not a charter peer loses the event.
        outbox.publish("Delete", outbox.tombstone_object(event.ap_id, "Event"), audience="outsiders",
                       object_id=event.ap_id)


def _remaining(event: Any) -> int | None:
    try:
        from node.events.services import remaining_places
    except ImportError:
        return None
    try:
        return remaining_places(event, event.starts_at)
    except Exception:  # noqa: BLE001 - a count must never stop a publication
        return None


def organisation_id(org: Any) -> str:
    return f"{current_app.config['HALLES_URL']}/organisations/{org.slug}"


def organisation_object(org: Any, fields: dict[str, Any]) -> dict[str, Any]:
    identity = load_identity()
    obj: dict[str, Any] = {
        "@context": EVENT_CONTEXT,
        "id": organisation_id(org),
        "type": "Organization",
        "attributedTo": identity.actor_url,
        "name": fields.get("name"),
        "updated": outbox.publication_stamp(),
        "halles:directory": fields,
    }
    if fields.get("description"):
        obj["summary"] = fields["description"]
    if fields.get("website"):
        obj["url"] = fields["website"]
    if fields.get("topics"):
        obj["tag"] = [{"type": "Hashtag", "name": f"#{topic}"} for topic in fields["topics"]]
    return obj


def on_organisation_change(action: str, org: Any) -> None:
    """Per-field consent: peers get the network projection, everyone else the public one. A
    projection without a name (consent withdrawn) or a deleted organisation becomes a Delete."""
    from node.organisations.services import directory_entry

    ap_id = organisation_id(org)
    for audience, scope in (("outsiders", "public"), ("network", "network")):
        gone = action == "delete" or getattr(org, "deleted_at", None) is not None
        entry = {} if gone else directory_entry(org, scope)
        # Local ids mean nothing elsewhere; empty values are simply not sent.
        fields = {k: v for k, v in entry.items() if k not in ("id", "slug") and v not in (None, "", [])}
        previous = _previous_audience(ap_id, (audience,))
        if not fields.get("name"):
            if previous is not None:
                outbox.publish("Delete", outbox.tombstone_object(ap_id, "Organization"), audience=audience,
                               object_id=ap_id)
            continue
        outbox.publish("Create" if previous is None else "Update", organisation_object(org, fields),
                       audience=audience, object_id=ap_id)
    if action == "delete":
        outbox.add_tombstone(ap_id, "Organization")


def register_hooks() -> None:
    """Attach to the domains' hook lists once per process."""
    import importlib

    for module_name, hook_list, hook in (
        ("node.events.services", "EVENT_CHANGE_HOOKS", on_event_change),
        ("node.organisations.services", "ORGANISATION_CHANGE_HOOKS", on_organisation_change),
    ):
        try:
            hooks = getattr(importlib.import_module(module_name), hook_list)
        except (ImportError, AttributeError):
            continue
        if hook not in hooks:
            hooks.append(hook)
