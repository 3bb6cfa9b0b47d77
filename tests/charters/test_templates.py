"""Charter templates: every shipped template renders with the node's values; mistakes are named."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from node.charters import services
from node.charters.services import CharterTemplateError, render_charter

TEMPLATES = Path(__file__).resolve().parents[2] / "charter_templates"
VARIABLES = {
    "place_name": "La Maison Commune",
    "city": "Lyon",
    "url": "https://maison.example.org",
    "version": "2.1",
    "date": "2027-03-14",
}


@pytest.mark.parametrize(
    "name", ["charte-reseau.fr.md", "network-charter.en.md", "reglement-interieur.fr.md", "house-rules.en.md"]
)
def test_shipped_templates_render_with_every_variable(name):
    text = (TEMPLATES / name).read_text(encoding="utf-8")
    rendered = render_charter(text, VARIABLES)
    assert "{{" not in rendered and "}}" not in rendered
    assert "La Maison Commune" in rendered and "Lyon" in rendered and "2.1" in rendered
    assert "2027-03-14" in rendered


@pytest.mark.parametrize("name,words", [
    ("charte-reseau.fr.md", ["concurren", "non-partisan", "transparence", "solidarité", "pouvoir d'agir",
                             "accessibilité", "consent", "nouvelle version"]),
    ("network-charter.en.md", ["compete", "non-partisanship", "transparency", "solidarity", "empowerment",
                               "accessibility", "consent", "new version"]),
])
def test_network_charter_carries_the_commitments_of_the_network(name, words):
    text = (TEMPLATES / name).read_text(encoding="utf-8").lower()
    for word in words:
        assert word.lower() in text, word


def test_readme_documents_every_variable():
    readme = (TEMPLATES / "README.md").read_text(encoding="utf-8")
    for variable in services.TEMPLATE_VARIABLES:
        assert "{{ " + variable + " }}" in readme


def test_unknown_variable_is_a_clear_error():
    with pytest.raises(CharterTemplateError) as info:
        render_charter("Bienvenue à {{ place }} et {{ ville }} ({{ city }})", VARIABLES)
    message = info.value.detail
    assert "{{ place }}" in message and "{{ ville }}" in message
    assert "{{ place_name }}" in message  # says what exists
    assert info.value.status == 422


def test_syntax_error_names_the_line():
    with pytest.raises(CharterTemplateError, match="line 3"):
        render_charter("un\ndeux\ntrois {{ city \n", VARIABLES)


def test_the_sandbox_keeps_templates_away_from_python_internals():
    with pytest.raises(CharterTemplateError):
        render_charter("{{ city.__class__.__mro__[1].__subclasses__() }}", VARIABLES)


def test_plain_text_is_kept_as_written():
    assert render_charter("Pas de variable ici.\n", VARIABLES) == "Pas de variable ici.\n"


def test_body_is_normalised_before_hashing():
    assert services.normalise_body("a\r\nb\rc  \n\n\n") == "a\nb\nc\n"
    body = services.normalise_body("Charte\n")
    assert services.sha256_hex(body) == hashlib.sha256(b"Charte\n").hexdigest()


def test_default_charter_is_published_once_in_both_languages(app):
    lines = services.publish_default_charter(app)
    assert "1.0" in lines[0]
    with app.app_context():
        current = services.current_version()
        assert current.version == "1.0"
        body = current.body
        french, english = body.index("Charte du réseau"), body.index("Network charter")
        assert french < english  # French first, then English
        assert "Les Halles Civiques (Paris)" in body
        assert "{{" not in body
        assert current.sha256 == hashlib.sha256(body.encode("utf-8")).hexdigest()
    again = services.publish_default_charter(app)
    assert "already published" in again[0]


def test_missing_templates_are_reported_not_fatal(make_app, tmp_path):
    app = make_app(HALLES_CHARTER_TEMPLATES=str(tmp_path))
    lines = services.publish_default_charter(app)
    assert "not found" in lines[0] and "halles charter publish" in lines[0]
    with app.app_context():
        assert services.current_version() is None
