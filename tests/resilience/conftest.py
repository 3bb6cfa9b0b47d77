"""Resilience and security suite: faults (kill -9, broken peers, SMTP down, full disk), load, hostile
input and the access matrix. Prints what it tried at the end of the run (``tally``)."""

from __future__ import annotations

import pytest

from tests.network.conftest import make_node  # noqa: F401 - the same in-process nodes as the network tests
from tests.resilience import tally
from tests.resilience.peers import FakePeer


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    found = tally.lines()
    if not found:
        return
    terminalreporter.section("resilience summary")
    for line in found:
        terminalreporter.write_line(line)


@pytest.fixture
def count_rows():
    """count_rows(app) -> {table: rows} for every table of the schema."""
    from sqlalchemy import func, select

    from node.extensions import db

    def _count(app) -> dict[str, int]:
        with app.app_context():
            return {name: db.session.scalar(select(func.count()).select_from(table)) or 0
                    for name, table in db.metadata.tables.items() if name != "rate_limit_buckets"}

    return _count


@pytest.fixture
def peers():
    """peers(mode) -> a FakePeer on loopback behaving as ``mode`` (one of ``peers.MODES``); all are
    closed after the test."""
    made: list[FakePeer] = []

    def make(mode: str = "ok") -> FakePeer:
        peer = FakePeer(mode)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()
