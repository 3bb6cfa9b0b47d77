"""The web side of federation: WebFinger, NodeInfo, the actor, inbox, outbox (catch-up cursor),
followers, activities, and ActivityPub content negotiation on object URLs (410 for tombstones)."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, abort, current_app, json, jsonify, render_template, request
from sqlalchemy import func, select

from federation.httpsig import verify_request
from node.common import ratelimit
from node.extensions import db
from node.fedi import inbox as inbox_module
from node.fedi import outbox, peering
from node.fedi.identity import USERNAME, actor_document, load_identity
from node.fedi.keystore import resolve_key
from node.fedi.models import Follow, OutboxEntry, RemoteActor, Tombstone

web = Blueprint("fedi", __name__)
#: Server-to-server endpoints authenticate with HTTP signatures, never cookies.
CSRF_EXEMPT = True

AP_JSON = "application/activity+json"
LD_JSON = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
OUTBOX_PAGE_SIZE = 100
SOFTWARE_VERSION = "0.1.0"


def ap_response(document: Any, status: int = 200) -> Response:
    return Response(json.dumps(document, ensure_ascii=False), status=status, mimetype=AP_JSON,
                    headers={"Vary": "Accept"})


def wants_activitypub() -> bool:
    accept = request.headers.get("Accept", "")
    return "application/activity+json" in accept or (
        "application/ld+json" in accept and "activitystreams" in accept
    ) or request.args.get("format") == "activity"


@web.record_once
def _attach_hooks(_state) -> None:
    from node.fedi import publishing

    publishing.register_hooks()


@web.get("/.well-known/webfinger")
def webfinger():
    identity = load_identity()
    resource = request.args.get("resource", "")
    if not resource:
        abort(400, "add ?resource=acct:agenda@host")
    hosts = {identity.host, identity.host.split(":")[0]}
    accepted = {f"acct:{USERNAME}@{host}" for host in hosts} | {identity.actor_url, identity.base_url}
    if resource not in accepted:
        abort(404, f"this node only knows acct:{identity.handle}")
    document = {
        "subject": f"acct:{identity.handle}",
        "aliases": [identity.actor_url, identity.base_url],
        "links": [
            {"rel": "self", "type": AP_JSON, "href": identity.actor_url},
            {"rel": "http://webfinger.net/rel/profile-page", "type": "text/html", "href": identity.base_url},
        ],
    }
    return Response(json.dumps(document), mimetype="application/jrd+json",
                    headers={"Access-Control-Allow-Origin": "*"})


@web.get("/.well-known/nodeinfo")
def nodeinfo_links():
    base = current_app.config["HALLES_URL"]
    return {"links": [{"rel": "http://nodeinfo.diaspora.software/ns/schema/2.1", "href": f"{base}/nodeinfo/2.1"}]}


@web.get("/nodeinfo/2.1")
def nodeinfo():
    from node.events.models import Event
    from node.members.models import User

    users = db.session.scalar(select(func.count(User.id)).where(User.active.is_(True))) or 0
    local_events = db.session.scalar(select(func.count(Event.id)).where(Event.origin_actor_id.is_(None))) or 0
    document = {
        "version": "2.1",
        "software": {
            "name": "halles",
            "version": SOFTWARE_VERSION,
            "repository": "https://github.com/halles-tiers-lieux/halles",
            "homepage": "https://halles.tiers-lieux.org",
        },
        "protocols": ["activitypub"],
        "services": {"inbound": [], "outbound": ["atom1.0"]},
        "openRegistrations": False,
        "usage": {"users": {"total": users, "activeMonth": users, "activeHalfyear": users},
                  "localPosts": local_events},
        "metadata": {
            "nodeName": current_app.config["HALLES_NAME"],
            "city": current_app.config["HALLES_CITY"],
            "charter": outbox.charter_reference(),
        },
    }
    return Response(json.dumps(document), mimetype='application/json; profile="http://nodeinfo.diaspora.software/ns/schema/2.1#"')


@web.get("/actor")
def actor():
    return ap_response(actor_document(load_identity(), outbox.charter_reference()))


@web.post("/inbox")
@web.post("/actor/inbox")
def inbox():
    # Per remote server (the domain of the signing key, else the client's address), before any work:
    # verifying means fetching keys and checking signatures, which a flood must not get for free.
    # A partner (a server this node follows or peers with) has a larger budget of its own. Its name is
    # not verified yet: a forger claiming it spends the partner's tokens, then fails the signature
    # check before any activity's proofs are verified.
    sender = inbox_module._key_domain(request.headers) or ratelimit.client_address()
    limit = "inbox_partners" if peering.is_partner_domain(sender) else "inbox"
    ratelimit.enforce(limit, sender)
    received = inbox_module.receive(
        request.method, inbox_module.request_url(request), request.headers, request.get_data(cache=False),
        # A batch spends one token per activity, before verifying as the first: the budget counts activities.
        charge_batch=lambda count: ratelimit.enforce(limit, sender, cost=count - 1))
    if received.results is not None:
        return jsonify({"results": received.results}), 202
    return Response(status=202, headers={"X-Halles-Duplicate": "1"} if received.duplicate else {})


def _requester_is_peer() -> bool:
    """An optional signature on GET /outbox tells us a peer is asking: it then sees network entries."""
    if "Signature" not in request.headers:
        return False
    result = verify_request("GET", inbox_module.request_url(request), request.headers, b"", resolve_key,
                            now=outbox.now_aware())
    if not result.ok or not result.owner:
        return False
    actor = db.session.scalar(select(RemoteActor).where(RemoteActor.ap_id == result.owner))
    if actor is None:
        return False
    follow = db.session.scalar(
        select(Follow).where(Follow.actor_id == actor.id, Follow.direction == "incoming", Follow.state == "accepted")
    )
    return follow is not None and follow.attestation is not None and outbox.attests_current_charter(
        follow, outbox.charter_reference())


@web.get("/outbox")
def outbox_collection():
    identity = load_identity()
    peer = _requester_is_peer()
    audiences = ("public", "network") if peer else ("public", "outsiders")
    after = request.args.get("after")
    if after is None:
        total = db.session.scalar(select(func.count(OutboxEntry.id)).where(OutboxEntry.audience.in_(audiences)))
        return ap_response({
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": identity.outbox_url,
            "type": "OrderedCollection",
            "totalItems": total or 0,
            "first": f"{identity.outbox_url}?after=0",
        })
    if not re.fullmatch(r"\d{1,18}", after):
        abort(400, "after must be a cursor this node gave (a whole number)")
    limit = min(int(request.args.get("limit", OUTBOX_PAGE_SIZE)) if request.args.get("limit", "").isdigit()
                else OUTBOX_PAGE_SIZE, 500)
    rows = db.session.execute(
        select(OutboxEntry.id, OutboxEntry.activity)
        .where(OutboxEntry.id > int(after), OutboxEntry.audience.in_(audiences))
        .order_by(OutboxEntry.id)
        .limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = str(rows[-1][0]) if rows else after
    page: dict[str, Any] = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{identity.outbox_url}?after={after}",
        "type": "OrderedCollectionPage",
        "partOf": identity.outbox_url,
        # Oldest first from the cursor: a peer catching up applies changes in the order they happened.
        "orderedItems": [activity for _id, activity in rows],
        "cursor": cursor,
    }
    if more:
        page["next"] = f"{identity.outbox_url}?after={cursor}"
    return ap_response(page)


@web.get("/followers")
def followers():
    identity = load_identity()
    total = db.session.scalar(
        select(func.count(Follow.id)).where(Follow.direction == "incoming", Follow.state == "accepted")
    )
    return ap_response({"@context": "https://www.w3.org/ns/activitystreams", "id": identity.followers_url,
                        "type": "OrderedCollection", "totalItems": total or 0})


@web.get("/following")
def following():
    identity = load_identity()
    total = db.session.scalar(
        select(func.count(Follow.id)).where(Follow.direction == "outgoing", Follow.state == "accepted")
    )
    return ap_response({"@context": "https://www.w3.org/ns/activitystreams", "id": identity.following_url,
                        "type": "OrderedCollection", "totalItems": total or 0})


@web.get("/activities/<activity_uuid>")
def activity(activity_uuid: str):
    url = f"{current_app.config['HALLES_URL']}/activities/{activity_uuid}"
    entry = db.session.scalar(select(OutboxEntry).where(OutboxEntry.activity_id == url))
    if entry is None or entry.audience != "public":
        abort(404)
    return ap_response(entry.activity)


@web.before_app_request
def activitypub_negotiation():
    """``/events/<uuid>`` and ``/organisations/<slug>`` answer ActivityPub JSON to servers that ask
    for it, and 410 with a Tombstone once deleted (browsers get a 410 page then); otherwise browsers
    get the HTML page of the web interface."""
    path = request.path
    if request.method != "GET" or not (path.startswith("/events/") or path.startswith("/organisations/")):
        return None
    if path.count("/") != 2 or "." in path.rsplit("/", 1)[1]:
        return None
    activitypub = wants_activitypub()
    url = current_app.config["HALLES_URL"] + path
    tombstone = db.session.scalar(select(Tombstone).where(Tombstone.ap_id == url))
    if tombstone is not None:
        # Deleted: 410 for everyone, so crawlers and servers alike stop asking.
        if not activitypub:
            # The web interface's error page, in the visitor's language, pointing to the Tombstone.
            page = render_template("error.html", status=410, title="Gone", detail=None, deleted=True, alternate=url)
            return Response(page, status=410, mimetype="text/html", headers={"Vary": "Accept"})
        return ap_response(outbox.tombstone_object(url, tombstone.former_type) | {
            "deleted": tombstone.deleted_at.strftime("%Y-%m-%dT%H:%M:%SZ")}, status=410)
    if not activitypub:
        return None  # browsers get the page of the web interface
    # "outsiders" is the public projection of a directory entry (peers get a richer "network" twin).
    entry = outbox.last_published(url, ("public", "outsiders"))
    if entry is None or entry.activity_type == "Delete":
        abort(404)
    return ap_response(entry.activity.get("object"))
