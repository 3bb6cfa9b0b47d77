import pytest

from tests.fediverse.support import FakeServer
from tests.support.nodes import Node


@pytest.fixture
def make_node(make_app):
    started: list[Node] = []

    def _make(name: str = "Les Halles Civiques", city: str = "Paris", **config) -> Node:
        node = Node(make_app, name=name, city=city, **config).start()
        started.append(node)
        return node

    yield _make
    for node in started:
        node.stop()


@pytest.fixture
def fake_server():
    servers: list[FakeServer] = []

    def _make(**kwargs) -> FakeServer:
        server = FakeServer(**kwargs)
        servers.append(server)
        return server

    yield _make
    for server in servers:
        server.close()
