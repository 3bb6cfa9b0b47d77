"""Free-text search (``q``) through the database's full-text index: SQLite FTS5, PostgreSQL tsvector
over unaccent (migration 0002, node/events/search.py)."""

from __future__ import annotations

import pytest

from node.events.search import MAX_WORDS, search_words
from tests.events.conftest import event_body
from tests.events.test_listing import _remote_event


def _titles(client, **params) -> set[str]:
    response = client.get("/api/v1/events", query_string={"scope": "network", "limit": 100, **params})
    assert response.status_code == 200, response.get_json()
    return {item["title"] for item in response.get_json()["items"]}


@pytest.fixture
def agenda(client, world):
    headers = world["headers"]["manager_a"]
    bodies = [
        event_body(days_ahead=3, title="Débat : la démocratie locale", description="Ouvert à toutes et tous."),
        event_body(days_ahead=4, title="Atelier vélo", description="Réparer son vélo soi-même.",
                   tags=["mobilité", "Réemploi"], category="workshop"),
        event_body(days_ahead=5, title="Projection", description="Un chef-d'œuvre du cinéma muet.",
                   category="screening", place_name="Salle des fêtes", city="Saint-Étienne",
                   address="3 place Jean Jaurès"),
        event_body(days_ahead=6, title="Conférence numérique", description="Les communs numériques."),
    ]
    created = {}
    for body in bodies:
        response = client.post("/api/v1/events", json=body, headers=headers)
        assert response.status_code == 201, response.get_json()
        created[body["title"]] = response.get_json()
    return created


def test_accents_and_case_are_folded_both_ways(client, agenda):
    assert _titles(client, q="debat") == {"Débat : la démocratie locale"}
    assert _titles(client, q="DÉBAT") == {"Débat : la démocratie locale"}
    assert _titles(client, q="democratie") == {"Débat : la démocratie locale"}
    assert _titles(client, q="velo") == {"Atelier vélo"}
    # Ligatures are spelt out: "oeuvre" finds "œuvre".
    assert _titles(client, q="oeuvre") == {"Projection"}
    assert _titles(client, q="œuvre") == {"Projection"}


def test_words_match_as_prefixes_and_all_must_match(client, agenda):
    assert _titles(client, q="conf") == {"Conférence numérique"}
    assert _titles(client, q="numeri") == {"Conférence numérique"}
    assert _titles(client, q="atelier reparer") == {"Atelier vélo"}
    assert _titles(client, q="atelier cinema") == set()


def test_tags_place_and_city_are_searched(client, agenda):
    assert _titles(client, q="mobilite") == {"Atelier vélo"}
    assert _titles(client, q="reemploi") == {"Atelier vélo"}
    assert _titles(client, q="salle fetes") == {"Projection"}
    assert _titles(client, q="saint etienne") == {"Projection"}
    assert _titles(client, q="saint-etienne") == {"Projection"}


def test_search_combines_with_the_other_filters(client, agenda):
    assert _titles(client, q="atelier", category="workshop") == {"Atelier vélo"}
    assert _titles(client, q="atelier", category="debate") == set()
    assert _titles(client, q="projection", city="saint-etienne") == {"Projection"}


def test_edits_and_deletions_reach_the_index(client, world, agenda):
    headers = world["headers"]["manager_a"]
    event = agenda["Atelier vélo"]
    response = client.patch(f"/api/v1/events/{event['id']}", json={"title": "Ressourcerie ouverte"}, headers=headers)
    assert response.status_code == 200, response.get_json()
    assert _titles(client, q="ressourcerie") == {"Ressourcerie ouverte"}
    assert _titles(client, q="atelier") == set()
    # Untouched fields stay searchable after the update.
    assert _titles(client, q="reparer") == {"Ressourcerie ouverte"}
    assert client.delete(f"/api/v1/events/{event['id']}", headers=headers).status_code == 204
    assert _titles(client, q="ressourcerie") == set()


def test_events_of_other_nodes_are_found(app, client, agenda):
    _remote_event(app)
    assert _titles(client, q="lyonnais") == {"Atelier lyonnais"}
    assert _titles(client, q="atelier") == {"Atelier vélo", "Atelier lyonnais"}


@pytest.mark.parametrize("query", [
    '"', "'", "*", "debat*", "a:b", "!&|", "NEAR(a b)", "title:debat", "') OR 1=1 --", "\\", "<script>",
    "débat AND NOT", "_", "   ",
])
def test_any_text_is_a_query_never_an_error(client, agenda, query):
    response = client.get("/api/v1/events", query_string={"q": query})
    assert response.status_code == 200, response.get_json()


def test_punctuation_only_queries_match_everything_like_no_query(client, agenda):
    assert _titles(client, q="!!!") == _titles(client)
    assert _titles(client, q="débat*") == {"Débat : la démocratie locale"}


def test_a_query_of_too_many_words_is_refused_with_the_reason(client, agenda):
    response = client.get("/api/v1/events", query_string={"q": " ".join(["mot"] * (MAX_WORDS + 1))})
    assert response.status_code == 422
    assert "at most" in response.get_json()["detail"]


def test_search_words_fold_like_the_index():
    assert search_words("Débat : L'ÉCOLE, Œuvre_commune!") == ["debat", "l", "ecole", "oeuvre", "commune"]
    assert search_words(None) == []
