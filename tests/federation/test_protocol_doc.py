"""docs/protocol.md shows real examples; this test keeps them verifiable by the code."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from federation import keys
from federation.httpsig import verify_request
from federation.proofs import verify_document

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


@pytest.fixture(scope="module")
def examples():
    text = DOC.read_text()
    found = dict(re.findall(r"<!-- example: ([\w-]+) -->\n```\w*\n(.*?)\n```", text, flags=re.S))
    assert set(found) == {"public-key", "multikey", "signed-object", "rfc9421", "cavage"}
    return found


def resolver(examples):
    public_key = json.loads(examples["public-key"])
    multikey = json.loads(examples["multikey"])
    records = {
        public_key["id"]: keys.KeyRecord(
            public_key["id"], keys.load_public_key(public_key["publicKeyPem"]), public_key["owner"]
        ),
        multikey["id"]: keys.KeyRecord(
            multikey["id"], keys.multibase_to_ed25519(multikey["publicKeyMultibase"]), multikey["controller"]
        ),
    }
    return lambda key_id, refresh=False: records.get(key_id)


def test_key_examples(examples):
    public_key = json.loads(examples["public-key"])
    assert public_key["id"] == keys.main_key_id(public_key["owner"])
    assert keys.load_public_key(public_key["publicKeyPem"]).key_size == 2048
    multikey = json.loads(examples["multikey"])
    assert multikey["id"] == keys.ed25519_key_id(multikey["controller"])
    assert multikey["publicKeyMultibase"].startswith("z6Mk")


def test_signed_object_example_verifies(examples):
    document = json.loads(examples["signed-object"])
    now = datetime.fromisoformat(document["proof"]["created"]) + timedelta(minutes=1)
    result = verify_document(document, resolver(examples), now=now, expected_origin=document["id"])
    assert result.ok, result.reason
    document["name"] += "!"
    assert not verify_document(document, resolver(examples), now=now).ok


@pytest.mark.parametrize("name", ["rfc9421", "cavage"])
def test_signed_request_examples_verify(examples, name):
    head, body = examples[name].split("\n\n", 1)
    request_line, *header_lines = head.split("\n")
    method, path, _ = request_line.split(" ")
    headers = dict(line.split(": ", 1) for line in header_lines)
    url = f"https://{headers['Host']}{path}"
    now = parsedate_to_datetime(headers["Date"]).astimezone(UTC)
    result = verify_request(method, url, headers, body.encode(), resolver(examples), now=now)
    assert result.ok, result.reason
    assert result.flavour == name


def test_network_sections_follow_the_protocol_core():
    text = DOC.read_text()
    assert text.index("## Safe fetch") < text.index("<!-- network sections follow -->") < text.index("## Peering")
