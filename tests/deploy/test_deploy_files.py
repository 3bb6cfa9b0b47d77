"""The deployment kit's files: settings documented and valid, compose file valid, entry point,
backup script, admin command wrapper, systemd units and install script consistent with each other."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node import config as config_module
from tests.support.requirements import missing

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ENV_EXAMPLE = DEPLOY / ".env.example"
BIN = Path(sys.executable).parent
VARIABLE = re.compile(r"^#? ?([A-Z][A-Z0-9_]+)=(.*)$")


def env_example_lines() -> list[str]:
    return ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()


def documented_variables() -> set[str]:
    return {match.group(1) for line in env_example_lines() if (match := VARIABLE.match(line))}


def readme_variables() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0] if "## Configuration" in text else ""
    return set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section))


def parse_env(path: Path) -> dict[str, str]:
    """NAME=value lines as systemd's EnvironmentFile and docker compose read them (no quotes used)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


# -- .env.example ---------------------------------------------------------------------------------


def test_env_example_documents_every_setting_the_node_reads():
    documented = documented_variables()
    assert set(config_module.ENV_SETTINGS) - documented == set(), "add these settings to deploy/.env.example"
    assert readme_variables() - documented == set(), "README's configuration table and deploy/.env.example differ"
    gunicorn_settings = set(re.findall(r'os\.environ\.get\("([A-Z_]+)"', (DEPLOY / "gunicorn.conf.py").read_text()))
    assert gunicorn_settings - documented == set()
    compose_variables = set(re.findall(r"\$\{([A-Z_]+)", (DEPLOY / "compose.yaml").read_text()))
    assert compose_variables - documented == set()


def test_every_setting_in_env_example_is_explained():
    block: list[str] = []
    blocks = []
    for line in [*env_example_lines(), ""]:
        if line.strip():
            block.append(line)
        elif block:
            blocks.append(block)
            block = []
    for block in blocks:
        names = [match.group(1) for line in block if (match := VARIABLE.match(line))]
        prose = [line for line in block if line.startswith("#") and not VARIABLE.match(line)]
        if names:
            assert prose, f"explain {', '.join(names)} in deploy/.env.example"


def test_env_example_values_are_valid_settings(tmp_path):
    environ = parse_env(ENV_EXAMPLE)
    environ["HALLES_INSTANCE"] = str(tmp_path)
    environ["HALLES_SECRET_KEY"] = "x" * 8 + os.urandom(24).hex()
    loaded = config_module.load(environ=environ)
    config_module.validate(loaded)
    assert loaded["HALLES_BEHIND_PROXY"] is True and loaded["SESSION_COOKIE_SECURE"] is True
    assert loaded["HALLES_ALLOW_PRIVATE_ADDRESSES"] is False
    assert loaded["HALLES_URL"].startswith("https://")


# -- compose --------------------------------------------------------------------------------------


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    return None


@pytest.fixture
def compose_project(tmp_path):
    """deploy/ copied with a .env made from .env.example, as the docs say (cp .env.example .env)."""
    command = _compose_command()
    if command is None:
        missing("compose", "neither `docker compose` nor `docker-compose` is installed")
    project = tmp_path / "halles" / "deploy"
    shutil.copytree(DEPLOY, project)
    env = (project / ".env.example").read_text().replace("POSTGRES_PASSWORD=\n", "POSTGRES_PASSWORD=s3cret-for-tests\n")
    (project / ".env").write_text(env)
    return command, project


def test_compose_file_is_valid(compose_project):
    command, project = compose_project
    # `config` only reads and resolves the file: no daemon needed (none runs here).
    result = subprocess.run([*command, "-f", "compose.yaml", "config"], cwd=project, capture_output=True, text=True,
                            env={**os.environ, "COMPOSE_PROJECT_NAME": "halles"})
    assert result.returncode == 0, result.stderr
    resolved = result.stdout
    for service in ("db:", "setup:", "web:", "worker:", "proxy:"):
        assert f"\n  {service}" in resolved
    assert "postgresql://halles:s3cret-for-tests@db:5432/halles" in resolved
    assert "HALLES_BEHIND_PROXY: \"true\"" in resolved or "HALLES_BEHIND_PROXY: 'true'" in resolved
    assert "HALLES_BIND: 0.0.0.0:8000" in resolved
    assert "service_completed_successfully" in resolved and "service_healthy" in resolved


def test_compose_refuses_to_start_without_a_database_password(compose_project):
    command, project = compose_project
    (project / ".env").write_text((project / ".env.example").read_text())
    result = subprocess.run([*command, "-f", "compose.yaml", "config"], cwd=project, capture_output=True, text=True)
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in result.stderr


# -- image entry point, backup script, admin command ----------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HALLES_", "DATABASE_URL"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def test_entrypoint_setup_creates_the_node_once_then_upgrades(tmp_path):
    env = _env(HALLES_INSTANCE=str(tmp_path / "instance"), HALLES_NAME="Les Halles de Lyon", HALLES_CITY="Lyon",
               HALLES_URL="https://halles-lyon.example.org")
    entrypoint = str(DEPLOY / "docker-entrypoint.sh")
    first = subprocess.run(["sh", entrypoint, "setup"], env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "first start: creating the node Les Halles de Lyon" in first.stdout
    assert (tmp_path / "instance" / "keys" / "rsa.pem").exists()
    key = (tmp_path / "instance" / "keys" / "rsa.pem").read_bytes()
    second = subprocess.run(["sh", entrypoint, "setup"], env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "first start" not in second.stdout
    assert (tmp_path / "instance" / "keys" / "rsa.pem").read_bytes() == key
    # Any other command runs as given (e.g. `docker compose exec web halles doctor`).
    other = subprocess.run(["sh", entrypoint, "halles", "db", "current"], env=env, capture_output=True, text=True,
                           timeout=120)
    assert other.returncode == 0 and "(head)" in other.stdout


def test_entrypoint_setup_says_what_is_missing(tmp_path):
    env = _env(HALLES_INSTANCE=str(tmp_path / "instance"), HALLES_CITY="Lyon")
    result = subprocess.run(["sh", str(DEPLOY / "docker-entrypoint.sh"), "setup"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0 and "set HALLES_NAME in .env" in result.stderr


def test_backup_script_writes_an_archive_and_prunes_old_ones(tmp_path):
    instance = tmp_path / "instance"
    env = _env(HALLES_INSTANCE=str(instance))
    init = subprocess.run([str(BIN / "halles"), "init", "--name", "Tiers-lieu", "--city", "Nantes", "--url",
                           "https://tl.example.org"], env=env, capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    backups = tmp_path / "backups"
    backups.mkdir()
    old = backups / "halles-backup-tl.example.org-20200101-031500.tar.gz"
    old.write_bytes(b"old")
    month_ago = time.time() - 30 * 86400
    os.utime(old, (month_ago, month_ago))
    unrelated = backups / "notes.txt"
    unrelated.write_text("keep me")
    os.utime(unrelated, (month_ago, month_ago))
    env.update(HALLES_BIN=str(BIN / "halles"), HALLES_BACKUP_DIR=str(backups), HALLES_BACKUP_KEEP_DAYS="14")
    result = subprocess.run(["sh", str(DEPLOY / "backup.sh")], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    archives = sorted(path.name for path in backups.glob("halles-backup-*.tar.gz"))
    assert len(archives) == 1 and archives[0] != old.name
    assert unrelated.exists()
    assert str(old) in result.stdout  # says what it removed


def test_admin_command_reads_the_settings_file_literally(tmp_path):
    app_dir = tmp_path / "app"
    (app_dir / ".venv" / "bin").mkdir(parents=True)
    fake = app_dir / ".venv" / "bin" / "halles"
    fake.write_text('#!/bin/sh\nprintf "%s|%s|%s|%s\\n" "$HALLES_NAME" "$HALLES_CITY" "$HALLES_URL" "$*"\n')
    fake.chmod(0o755)
    settings = tmp_path / "halles.env"
    settings.write_text('# comment\nHALLES_NAME=Les Halles $(touch pwned) de Lyon\nHALLES_CITY="Lyon"\n\n'
                        "HALLES_URL=https://halles.example.org\n")
    result = subprocess.run(["sh", str(DEPLOY / "halles-command.sh"), "peer", "list"], capture_output=True, text=True,
                            env=_env(HALLES_ENV_FILE=str(settings), HALLES_APP_DIR=str(app_dir), HALLES_RUN_AS=""),
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Les Halles $(touch pwned) de Lyon|Lyon|https://halles.example.org|peer list"
    assert not (tmp_path / "pwned").exists()


# -- systemd units and install script -------------------------------------------------------------


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # keys are case-sensitive in systemd
    parser.read(DEPLOY / "systemd" / name)
    return parser


@pytest.mark.parametrize("name", ["halles-web.service", "halles-worker.service", "halles-backup.service"])
def test_systemd_units_point_at_files_of_the_kit(name):
    unit = _unit(name)
    service = unit["Service"]
    assert service["User"] == "halles" and service["EnvironmentFile"] == "/etc/halles/halles.env"
    install = (DEPLOY / "install.sh").read_text()
    assert "ENV_FILE=/etc/halles/halles.env" in install and "DATA_DIR=/var/lib/halles" in install
    for key in ("ExecStart", "ExecStartPre"):
        if key in service:
            program = service[key].split()[0]
            assert program.startswith("/opt/halles/")
            local = ROOT / program.removeprefix("/opt/halles/")
            # The virtualenv lives in .venv of the checkout, as in `make install` and install.sh.
            if ".venv/" not in program:
                assert local.exists(), f"{program} of {name} is not in the kit"
            for argument in service[key].split()[1:]:
                if argument.startswith("/opt/halles/"):
                    assert (ROOT / argument.removeprefix("/opt/halles/")).exists()
    assert "/var/lib/halles" in service.get("ReadWritePaths", "")


def test_backup_timer_runs_the_backup_service():
    timer = _unit("halles-backup.timer")
    assert timer["Timer"]["OnCalendar"] and timer["Timer"]["Persistent"] == "true"
    assert (DEPLOY / "systemd" / "halles-backup.service").exists()


def test_install_script_checks_its_arguments():
    script = str(DEPLOY / "install.sh")
    assert subprocess.run(["sh", "-n", script]).returncode == 0
    usage = subprocess.run(["sh", script, "--help"], capture_output=True, text=True)
    assert usage.returncode == 0 and "--domain" in usage.stdout
    missing_args = subprocess.run(["sh", script, "--domain", "halles.example.org"], capture_output=True, text=True)
    assert missing_args.returncode == 2 and "usage:" in missing_args.stderr
    url = subprocess.run(["sh", script, "--domain", "https://halles.example.org", "--name", "X", "--city", "Y",
                          "--email", "a@example.org"], capture_output=True, text=True)
    assert url.returncode == 2 and "the name only" in url.stderr


# -- docs -----------------------------------------------------------------------------------------


def test_deploy_guide_is_bilingual_and_names_only_files_that_exist(app):
    guide = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert "## Français" in guide and "## English" in guide
    for path in set(re.findall(r"(?<![\w/])((?:deploy|charter_templates|tests/deploy)/[\w./-]+\w)", guide)):
        assert (ROOT / path).exists(), f"docs/deploy.md names {path}, which does not exist"
    # The commands the guide teaches exist.
    for command in ("peer request", "peer approve", "peer show", "peer list", "doctor", "backup", "restore",
                    "admin create", "charter publish", "db upgrade"):
        assert f"halles {command}" in guide
    assert {"doctor", "backup", "restore", "peer", "admin", "charter"} <= set(app.cli.commands)
