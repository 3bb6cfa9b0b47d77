import pytest

from tests.support.nodes import Node


@pytest.fixture
def make_node(make_app):
    started: list[Node] = []

    def _make(name: str, city: str, **config) -> Node:
        node = Node(make_app, name=name, city=city, **config).start()
        started.append(node)
        return node

    yield _make
    for node in started:
        node.stop()


@pytest.fixture
def three_nodes(make_node):
    paris = make_node("Les Halles Civiques", "Paris")
    lyon = make_node("La Fabrique Commune", "Lyon")
    marseille = make_node("Le Comptoir des Quartiers", "Marseille")
    return paris, lyon, marseille
