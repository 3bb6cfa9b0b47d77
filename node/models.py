"""Imports every model so the metadata (and Alembic autogenerate) sees the whole schema."""

from node.charters.models import CharterSignature, CharterVersion  # noqa: F401
from node.common.ratelimit import RateLimitBucket  # noqa: F401
from node.events.models import Event, EventOccurrence, Registration  # noqa: F401
from node.fedi.models import (  # noqa: F401
    Delivery,
    Follow,
    InboxItem,
    OutboxEntry,
    RemoteActor,
    RemoteOrganisation,
    RemoteServer,
    Tombstone,
)
from node.mail.models import OutgoingEmail  # noqa: F401
from node.members.models import ApiToken, Invitation, User  # noqa: F401
from node.organisations.models import Organisation  # noqa: F401
from node.spaces.models import Booking, Desk, Room, Site  # noqa: F401
