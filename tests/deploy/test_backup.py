"""`halles backup` / `halles restore`: a node restored onto a fresh instance folder and database is
the same node (same keys, same rows in every table), on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import stat
import tarfile

import pytest

from tests.deploy.conftest import KINDS, dispose, node_app
from tests.deploy.data import all_rows, seed


def _actor(app) -> dict:
    response = app.test_client().get("/actor", headers={"Accept": "application/activity+json"})
    assert response.status_code == 200
    return response.get_json()


@pytest.fixture
def seeded_node(empty_database, init_node, tmp_path):
    """``seeded_node(kind)`` -> (app, instance, url) of a node made by `halles init`, with data."""
    apps = []

    def _make(kind: str):
        url = empty_database(kind)
        instance = init_node(url)
        (instance / "uploads").mkdir()
        (instance / "uploads" / "logo.svg").write_text("<svg/>")
        (instance / "worker.heartbeat").write_text("0")
        app = node_app(instance, url)
        apps.append(app)
        seed(app)
        return app, instance, url

    yield _make
    for app in apps:
        dispose(app)


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_gives_the_same_node(kind, seeded_node, empty_database, tmp_path):
    from node.common import ratelimit

    app, instance, url = seeded_node(kind)
    with app.app_context():  # a failed sign-in counted: on SQLite, the rate-limit file beside the database
        ratelimit.take("login", "203.0.113.5", ratelimit.Rate(10, 300))
    archive = tmp_path / "backups" / "nightly.tar.gz"
    result = app.test_cli_runner().invoke(args=["backup", "--output", str(archive)])
    assert result.exit_code == 0, result.output
    assert "backup written to" in result.output
    # The archive holds private keys: only its owner may read it.
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600

    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert {"instance/node.json", "instance/secret_key", "instance/keys/rsa.pem", "instance/keys/ed25519.pem",
            "instance/uploads/logo.svg"} <= names
    assert "instance/worker.heartbeat" not in names and "instance/halles.db" not in names
    assert not any(name.startswith("instance/halles.ratelimits.db") for name in names)
    assert manifest["format"] == "halles-backup" and manifest["format_version"] == 1
    assert manifest["node"]["url"] == "https://halles.example.org"
    assert manifest["database"]["kind"] == kind
    assert manifest["database"]["tables"]["events"] >= 1
    assert set(manifest["keys"]) == {"rsa", "ed25519"}
    assert all(info["fingerprint"].startswith("SHA256:") for info in manifest["keys"].values())

    before_rows = all_rows(url)
    before_actor = _actor(app)

    # A fresh machine: empty instance folder, empty database.
    new_instance = tmp_path / "restored-instance"
    new_url = empty_database(kind)
    target = node_app(new_instance, new_url, validate=False)
    try:
        result = target.test_cli_runner().invoke(args=["restore", str(archive)])
        assert result.exit_code == 0, result.output
        assert "restored Les Halles Civiques (https://halles.example.org)" in result.output
    finally:
        dispose(target)

    assert all_rows(new_url) == before_rows
    for relative in ("keys/rsa.pem", "keys/ed25519.pem", "secret_key"):
        assert (new_instance / relative).read_bytes() == (instance / relative).read_bytes()
        assert stat.S_IMODE((new_instance / relative).stat().st_mode) == 0o600
    assert (new_instance / "node.json").read_text() == (instance / "node.json").read_text()
    assert (new_instance / "uploads" / "logo.svg").read_text() == "<svg/>"

    restored = node_app(new_instance, new_url)
    try:
        actor = _actor(restored)
        assert actor["publicKey"]["publicKeyPem"] == before_actor["publicKey"]["publicKeyPem"]
        assert actor == before_actor
        assert restored.config["SECRET_KEY"] == app.config["SECRET_KEY"]
        listing = restored.test_client().get("/api/v1/events").get_json()
        assert [item["title"] for item in listing["items"]] == ["Débat : la démocratie locale"]
    finally:
        dispose(restored)


@pytest.mark.parametrize("kind", KINDS)
def test_restore_refuses_an_existing_node_without_force(kind, seeded_node, empty_database, init_node, tmp_path):
    app, _instance, _url = seeded_node(kind)
    archive = tmp_path / "backup.tar.gz"
    assert app.test_cli_runner().invoke(args=["backup", "-o", str(archive)]).exit_code == 0

    other_url = empty_database(kind)
    other_instance = init_node(other_url, name="La Fabrique Commune", city="Lyon", url="https://lyon.example.org")
    other = node_app(other_instance, other_url, validate=False)
    key_before = (other_instance / "keys" / "rsa.pem").read_bytes()
    rows_before = all_rows(other_url)
    try:
        result = other.test_cli_runner().invoke(args=["restore", str(archive)])
        assert result.exit_code == 1
        assert "refusing to restore over an existing node" in result.output
        assert "--force" in result.output
        assert (other_instance / "keys" / "rsa.pem").read_bytes() == key_before
        assert all_rows(other_url) == rows_before

        result = other.test_cli_runner().invoke(args=["restore", str(archive), "--force"])
        assert result.exit_code == 0, result.output
    finally:
        dispose(other)
    assert (other_instance / "keys" / "rsa.pem").read_bytes() == (_instance / "keys" / "rsa.pem").read_bytes()
    assert all_rows(other_url) == all_rows(_url)


def test_restore_refuses_a_damaged_archive_and_changes_nothing(seeded_node, empty_database, tmp_path):
    app, _instance, _url = seeded_node("sqlite")
    archive = tmp_path / "backup.tar.gz"
    assert app.test_cli_runner().invoke(args=["backup", "-o", str(archive)]).exit_code == 0
    damaged = tmp_path / "damaged.tar.gz"
    with tarfile.open(archive) as source, tarfile.open(damaged, "w:gz") as out:
        for member in source.getmembers():
            data = source.extractfile(member).read()
            if member.name == "instance/node.json":
                data = data.replace(b"Les Halles Civiques", b"Les Halles Pirates!!")
            member.size = len(data)
            import io

            out.addfile(member, io.BytesIO(data))

    new_instance = tmp_path / "fresh"
    new_url = empty_database("sqlite")
    target = node_app(new_instance, new_url, validate=False)
    try:
        result = target.test_cli_runner().invoke(args=["restore", str(damaged)])
        assert result.exit_code == 1
        assert "instance/node.json does not match its checksum" in result.output
        result = target.test_cli_runner().invoke(args=["restore", str(tmp_path / "nothing.tar.gz")])
        assert result.exit_code == 1 and "does not exist" in result.output
        (tmp_path / "notes.txt").write_text("not an archive")
        result = target.test_cli_runner().invoke(args=["restore", str(tmp_path / "notes.txt")])
        assert result.exit_code == 1 and "not a readable .tar.gz archive" in result.output
    finally:
        dispose(target)
    assert not (new_instance / "keys").exists() and not (new_instance / "node.json").exists()
    assert not os.path.exists(new_url.removeprefix("sqlite:///")) or all_rows(new_url) == {}


def test_restore_refuses_another_kind_of_database(seeded_node, pg_databases, tmp_path):
    app, _instance, _url = seeded_node("sqlite")
    archive = tmp_path / "backup.tar.gz"
    assert app.test_cli_runner().invoke(args=["backup", "-o", str(archive)]).exit_code == 0
    target = node_app(tmp_path / "fresh", pg_databases(), validate=False)
    try:
        result = target.test_cli_runner().invoke(args=["restore", str(archive)])
    finally:
        dispose(target)
    assert result.exit_code == 1
    assert "holds a sqlite database but this node is configured for postgresql" in result.output


def test_backup_refuses_without_node_keys_and_names_them(seeded_node, tmp_path):
    app, instance, _url = seeded_node("sqlite")
    (instance / "keys" / "ed25519.pem").unlink()
    result = app.test_cli_runner().invoke(args=["backup", "-o", str(tmp_path / "b.tar.gz")])
    assert result.exit_code == 1
    assert "node keys missing" in result.output and "ed25519.pem" in result.output
    assert not (tmp_path / "b.tar.gz").exists()


def test_backup_into_a_folder_picks_a_dated_name(seeded_node, tmp_path):
    app, _instance, _url = seeded_node("sqlite")
    folder = tmp_path / "nightly"
    folder.mkdir()
    result = app.test_cli_runner().invoke(args=["backup", "--output", str(folder)])
    assert result.exit_code == 0, result.output
    (archive,) = folder.iterdir()
    assert archive.name.startswith("halles-backup-halles.example.org-") and archive.name.endswith(".tar.gz")
