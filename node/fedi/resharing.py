"""Re-sharing a partner's event (Announce). The origin's signed object travels untouched, so a
third node verifies the origin's proof with the origin's key, whoever delivered it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from node.common.errors import Conflict, NotFound
from node.extensions import db
from node.fedi import outbox
from node.fedi.publishing import EVENT_AUDIENCE


def reshare(event: Any) -> None:
    """Announce a remote event to our audience. Does not commit."""
    if not event.is_remote or not event.remote_object:
        raise Conflict("only events of other nodes can be re-shared; this node's own events are already published")
    if "proof" not in event.remote_object:
        raise Conflict("this event carries no origin proof, so other nodes could not verify a re-share of it")
    audience = EVENT_AUDIENCE.get(event.visibility, "public")
    outbox.publish("Announce", event.remote_object, audience=audience, object_id=event.ap_id, sign_object=False)


def reshare_by_url(ap_id: str) -> None:
    from node.events.models import Event

    event = db.session.scalar(select(Event).where(Event.ap_id == ap_id.strip()))
    if event is None:
        raise NotFound(f"no event {ap_id} is known here; it must have reached this node first")
    reshare(event)
