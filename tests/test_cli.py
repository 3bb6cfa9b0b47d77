"""The `halles` commands of the people and charter domains: in-process with Flask's CLI runner, and
for real as subprocesses of `.venv/bin/halles` on a fresh instance."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.databases import backend

HALLES = Path(sys.executable).parent / "halles"


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def _count(app, model) -> int:
    from node.extensions import db

    with app.app_context():
        value = db.session.scalar(db.select(db.func.count()).select_from(model))
        db.session.remove()
    return value


def test_admin_create_prompts_for_a_hidden_confirmed_password(app, runner):
    from node.members.services import authenticate

    result = runner.invoke(args=["admin", "create", "Ana@Example.org", "--name", "Ana"],
                           input="un long mot de passe\nun long mot de passe\n")
    assert result.exit_code == 0, result.output
    assert "created admin ana@example.org" in result.stdout
    assert "un long mot de passe" not in result.output  # hidden input is not echoed
    with app.app_context():
        user = authenticate("ana@example.org", "un long mot de passe")
        assert user is not None and user.role == "admin" and user.name == "Ana"


def test_admin_create_without_password_prints_a_working_token(app, client, runner):
    result = runner.invoke(args=["admin", "create", "ops@example.org", "--no-password"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("hl_")
    me = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.get_json()["role"] == "admin"


@pytest.mark.parametrize(
    "args,input_,message",
    [
        (["admin", "create", "x@example.org", "--password", "court"], None, "at least 10 characters"),
        (["admin", "create", "x@example.org"], "court\ncourt\n", "at least 10 characters"),
        (["admin", "create", "pas-un-email", "--no-password"], None, "is not an email address"),
        (["admin", "create", "x@example.org", "--password", "assez long ici", "--no-password"], None, "not both"),
        (["token", "create", "nobody@example.org"], None, "no account with nobody@example.org"),
    ],
)
def test_cli_errors_are_one_line_without_traceback(app, runner, args, input_, message):
    from node.members.models import ApiToken, User

    users, tokens = _count(app, User), _count(app, ApiToken)
    result = runner.invoke(args=args, input=input_)
    assert result.exit_code == 1
    assert "Error: " in result.stderr and message in result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert (_count(app, User), _count(app, ApiToken)) == (users, tokens)


def test_admin_create_refuses_an_existing_account(app, runner, make_user):
    make_user("member", email="taken@example.org")
    result = runner.invoke(args=["admin", "create", "taken@example.org", "--no-password"])
    assert result.exit_code == 1 and "already has an account" in result.stderr


def test_token_create_and_users_list(app, client, runner, make_user, make_org):
    org = make_org("Voix des Habitants")
    make_user("org_manager", org.id, email="nour@example.org")
    result = runner.invoke(args=["token", "create", "NOUR@example.org", "--label", "agenda"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("hl_") and "\n" not in token
    assert client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    listing = runner.invoke(args=["users", "list"])
    assert listing.exit_code == 0
    assert "nour@example.org" in listing.stdout and "Voix des Habitants" in listing.stdout


def test_charter_publish_and_show(app, runner, make_org, tmp_path):
    from node.charters.models import CharterVersion

    make_org("Quartiers en Commun", contact_email="contact@qec.example.org")
    source = tmp_path / "charte.md"
    source.write_text("# Charte de {{ place_name }}\r\n\r\nÀ {{ city }}, version {{ version }}.\r\n", encoding="utf-8")
    result = runner.invoke(args=["charter", "publish", str(source), "--version", "2.0"])
    assert result.exit_code == 0, result.output
    expected_body = "# Charte de Les Halles Civiques\n\nÀ Paris, version 2.0.\n"
    assert f"SHA-256: {hashlib.sha256(expected_body.encode()).hexdigest()}" in result.stdout
    assert "published charter version 2.0: Charte de Les Halles Civiques" in result.stdout
    assert "Quartiers en Commun" in result.stdout

    shown = runner.invoke(args=["charter", "show"])
    assert shown.exit_code == 0
    assert "version: 2.0" in shown.stdout and shown.stdout.endswith(expected_body)
    assert "not signed yet: Quartiers en Commun" in shown.stdout

    versions = _count(app, CharterVersion)
    again = runner.invoke(args=["charter", "publish", str(source), "--version", "2.0"])
    assert again.exit_code == 1 and "already exists" in again.stderr
    bad = tmp_path / "bad.md"
    bad.write_text("Bienvenue à {{ lieu }}", encoding="utf-8")
    result = runner.invoke(args=["charter", "publish", str(bad), "--version", "3.0", "--title", "T"])
    assert result.exit_code == 1 and "{{ lieu }}" in result.stderr
    missing = runner.invoke(args=["charter", "publish", str(tmp_path / "nope.md"), "--version", "3.0"])
    assert missing.exit_code == 1 and "does not exist" in missing.stderr
    binary = tmp_path / "latin1.md"
    binary.write_bytes("Charte élaborée".encode("latin-1"))
    assert "not UTF-8" in runner.invoke(args=["charter", "publish", str(binary), "--version", "3.0"]).stderr
    assert _count(app, CharterVersion) == versions


def test_charter_show_without_charter(runner):
    result = runner.invoke(args=["charter", "show"])
    assert result.exit_code == 1 and "no charter is published yet" in result.stderr


def test_commands_check_the_configuration_first(app, runner):
    app.config["HALLES_URL"] = "ftp://wrong"
    result = runner.invoke(args=["users", "list"])
    assert result.exit_code == 2
    assert "HALLES_URL" in result.stderr and "Traceback" not in result.output


# -- the real command ---------------------------------------------------------------------------------


@pytest.fixture
def halles(tmp_path, database_factory):
    """Run `.venv/bin/halles` on a fresh instance folder, with a clean environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALLES_") and k != "DATABASE_URL"}
    env["HALLES_INSTANCE"] = str(tmp_path / "instance")
    if backend() == "postgres":
        env["DATABASE_URL"] = database_factory.new()

    def run(*args: str, input_: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(HALLES), *args], env=env, input=input_, capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)

    return run


def test_halles_commands_as_a_person_runs_them(halles, tmp_path):
    assert HALLES.exists(), f"{HALLES} missing: run `make install`"
    # Before init there is no secret key: a clear configuration error.
    early = halles("users", "list")
    assert early.returncode == 2 and "halles init" in early.stderr and "Traceback" not in early.stderr

    init = halles("init", "--name", "La Maison Commune", "--city", "Lyon", "--url", "https://maison.example.org")
    assert init.returncode == 0, init.stderr
    assert "published the network charter, version 1.0" in init.stdout

    created = halles("admin", "create", "ana@example.org", "--name", "Ana", "--password", "un long mot de passe")
    assert created.returncode == 0, created.stderr
    token = halles("token", "create", "ana@example.org", "--label", "test")
    assert token.returncode == 0 and token.stdout.strip().startswith("hl_")

    shown = halles("charter", "show")
    assert shown.returncode == 0
    assert "version: 1.0" in shown.stdout
    assert "La Maison Commune (Lyon)" in shown.stdout and "Network charter" in shown.stdout

    source = tmp_path / "charte-locale.md"
    source.write_text("# Charte de {{ place_name }}\n\nAdoptée à {{ city }} le {{ date }}.\n", encoding="utf-8")
    published = halles("charter", "publish", str(source), "--version", "1.1")
    assert published.returncode == 0, published.stderr
    assert "SHA-256: " in published.stdout and "no member organisation" in published.stdout

    listing = halles("users", "list")
    assert "ana@example.org" in listing.stdout and "admin" in listing.stdout

    for args, message in (
        (("token", "create", "nobody@example.org"), "no account"),
        (("admin", "create", "ana@example.org", "--no-password"), "already has an account"),
        (("charter", "publish", str(source), "--version", "1.1"), "already exists"),
        (("charter", "publish", str(tmp_path / "absent.md"), "--version", "9"), "does not exist"),
        (("init", "--name", "X", "--city", "Y", "--url", "https://x.example.org"), "already exists"),
    ):
        result = halles(*args)
        assert result.returncode != 0, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.stderr
        assert "Traceback" not in result.stderr
