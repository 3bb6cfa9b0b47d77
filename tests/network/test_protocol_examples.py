"""docs/protocol.md shows what goes on the wire between nodes, taken from this test's run.

Run with HALLES_WRITE_EXAMPLES=1 to rewrite the examples in the document from a fresh run (hosts are
rewritten to readable names, so their proofs are shown, not verifiable); otherwise the test checks
that every example still has exactly the shape the code produces, so the document cannot drift."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from sqlalchemy import select

from tests.network.helpers import create_event, mutual, peer, signed_organisation
from tests.support.nodes import settle

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
BLOCK = re.compile(r"(<!-- wire: ([\w-]+) -->\n```json\n)(.*?)(\n```)", re.S)


def shape(value):
    """Keys all the way down (lists by their first item): what must not drift."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def outbox_activity(node, activity_type, audience=None):
    from node.extensions import db
    from node.fedi.models import OutboxEntry

    def read():
        query = select(OutboxEntry).where(OutboxEntry.activity_type == activity_type).order_by(OutboxEntry.id)
        if audience:
            query = query.where(OutboxEntry.audience == audience)
        return db.session.scalars(query).first().activity

    return node.query(read)


def test_wire_examples(three_nodes):
    paris, lyon, marseille = three_nodes
    nodes = [paris, lyon, marseille]
    peer(lyon, paris, nodes)
    mutual(lyon, marseille, nodes)
    org = signed_organisation(paris, "Fabrique des Communs")
    paris.client.put(f"/api/v1/organisations/{org}/consent", headers=paris.admin_headers,
                     json={"website": "public", "contact_email": "network"})
    paris.client.patch(f"/api/v1/organisations/{org}", headers=paris.admin_headers,
                       json={"website": "https://fabrique.example", "contact_email": "bonjour@fabrique.example",
                             "topics": ["communs", "habitat"]})
    event = create_event(paris, org, "Débat : le tirage au sort peut-il sauver la démocratie locale ?",
                         accessibility={"step_free": True, "sign_language": True}, capacity=80,
                         tags=["démocratie"])
    settle(nodes)
    ap_id = _event_create(paris)["object"]["id"]
    assert lyon.cli("reshare", ap_id).exit_code == 0
    settle(nodes)
    paris.client.delete(f"/api/v1/events/{event['id']}", headers=paris.admin_headers)
    settle(nodes)

    produced = {
        "actor": paris.client.get("/actor").get_json(),
        "follow": outbox_activity(lyon, "Follow"),
        "accept": outbox_activity(paris, "Accept"),
        "create-event": _event_create(paris),
        "delete-event": _last(paris, "Delete"),
        "announce": outbox_activity(lyon, "Announce"),
        "organisation": outbox_activity(paris, "Update", "network"),
        "outbox-page": paris.client.get("/outbox?after=0&limit=2").get_json(),
    }
    hosts = {paris.url: "https://halles-civiques.example", lyon.url: "https://fabrique-commune.example",
             marseille.url: "https://comptoir-quartiers.example"}

    def readable(document):
        text = json.dumps(document, ensure_ascii=False, indent=2)
        for real, shown in hosts.items():
            text = text.replace(real, shown)
        return text

    doc = DOC.read_text(encoding="utf-8")
    found = {match.group(2) for match in BLOCK.finditer(doc)}
    assert found == set(produced), f"protocol.md wire examples {sorted(found)} != {sorted(produced)}"
    if os.environ.get("HALLES_WRITE_EXAMPLES"):
        doc = BLOCK.sub(lambda m: m.group(1) + readable(produced[m.group(2)]) + m.group(4), doc)
        DOC.write_text(doc, encoding="utf-8")
        return
    for match in BLOCK.finditer(doc):
        shown = json.loads(match.group(3))
        assert shape(shown) == shape(produced[match.group(2)]), (
            f"the '{match.group(2)}' example in docs/protocol.md no longer matches the wire: "
            "rerun this test with HALLES_WRITE_EXAMPLES=1"
        )


def _event_create(node):
    from node.extensions import db
    from node.fedi.models import OutboxEntry

    def read():
        for entry in db.session.scalars(select(OutboxEntry).where(OutboxEntry.activity_type == "Create")):
            if entry.activity["object"].get("type") == "Event":
                return entry.activity
        raise AssertionError("no Create of an Event in the outbox")

    return node.query(read)


def _last(node, activity_type):
    from node.extensions import db
    from node.fedi.models import OutboxEntry

    return node.query(lambda: db.session.scalars(
        select(OutboxEntry).where(OutboxEntry.activity_type == activity_type).order_by(OutboxEntry.id.desc())
    ).first().activity)
