"""`halles doctor`: each check is tested against the real broken condition it claims to detect
(nothing listening on the SMTP port, a key file missing, a stale heartbeat, an unreachable peer...)."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import subprocess
import threading
import time
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from node.ops import doctor
from node.ops.doctor import FAIL, OK, SKIP, WARN, Context
from tests.deploy.servers import JsonServer, closed_port
from tests.deploy.tls import TestCA
from tests.support.smtp import free_port

STRONG = secrets.token_urlsafe(48)


@pytest.fixture
def served(make_app):
    """``served(**config)`` -> an app served over HTTP on 127.0.0.1 at its HALLES_URL."""
    servers = []

    def _make(**config):
        port = free_port()
        settings = {"HALLES_URL": f"http://127.0.0.1:{port}", "SECRET_KEY": STRONG}
        settings.update(config)
        app = make_app(**settings)
        server = make_server("127.0.0.1", port, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return app

    yield _make
    for server in servers:
        server.shutdown()
        server.server_close()


def heartbeat(app, age: float = 0.0) -> None:
    (Path(app.config["HALLES_INSTANCE"]) / "worker.heartbeat").write_text(str(time.time() - age))


def run(check, app, context: Context | None = None) -> doctor.Check:
    with app.app_context():
        return check(app, context or Context(database_ok=True))


def add_peer(app, actor_url: str) -> None:
    from node.extensions import db
    from node.fedi.models import Follow, RemoteActor

    with app.app_context():
        actor = RemoteActor(ap_id=actor_url, domain=actor_url.split("/")[2], name="La Fabrique Commune",
                            document={"id": actor_url})
        db.session.add(actor)
        db.session.flush()
        db.session.add(Follow(actor_id=actor.id, direction="outgoing", state="accepted",
                              activity_id=f"{actor_url}/follow"))
        db.session.commit()
        db.session.remove()


# -- whole command --------------------------------------------------------------------------------


def test_a_healthy_node_passes_and_the_command_exits_0(served, smtp_server):
    app = served(HALLES_SMTP_URL=smtp_server.url)
    heartbeat(app)
    results = {check.name: check for check in doctor.run_checks(app)}
    assert [name for name, check in results.items() if check.status == FAIL] == []
    assert results["database"].status == OK and results["schema"].status == OK
    assert results["smtp"].status == OK and results["keys"].status == OK and results["worker"].status == OK
    # A loopback address works for trying Halles, but is not a public node: a warning, not a failure.
    assert results["url"].status == WARN and "local address" in results["url"].message
    assert results["tls"].status == SKIP
    result = app.test_cli_runner().invoke(args=["doctor"])
    assert result.exit_code == 0, result.output
    assert "OK    database" in result.output and "OK    worker" in result.output


def test_the_command_exits_1_and_says_what_to_do_on_a_failure(served, smtp_server):
    app = served(HALLES_SMTP_URL=smtp_server.url)
    heartbeat(app, age=3600)
    result = app.test_cli_runner().invoke(args=["doctor"])
    assert result.exit_code == 1
    line = next(line for line in result.output.splitlines() if line.startswith("FAIL  worker"))
    assert "last ran 60 minutes ago" in line and "systemctl restart halles-worker" in line
    assert "1 problem(s) to fix" in result.output
    as_json = app.test_cli_runner().invoke(args=["doctor", "--json"])
    assert as_json.exit_code == 1 and '"ok": false' in as_json.output


# -- settings -------------------------------------------------------------------------------------


def test_settings_wrong_value(make_app):
    app = make_app(SECRET_KEY=STRONG)
    # `halles` builds its app without validating (so that doctor can report): the same as an env typo.
    app.config["HALLES_TIMEZONE"] = "Europe/Lutece"
    check = run(doctor.check_settings, app)
    assert check.status == FAIL and "HALLES_TIMEZONE='Europe/Lutece'" in check.message


def test_settings_https_without_proxy_and_private_addresses_on_a_public_node(make_app):
    app = make_app(HALLES_URL="https://halles.example.org", HALLES_BEHIND_PROXY=False, SECRET_KEY=STRONG,
                   HALLES_ALLOW_PRIVATE_ADDRESSES=True)
    check = run(doctor.check_settings, app)
    assert check.status == WARN
    assert "HALLES_BEHIND_PROXY=true" in check.message and "HALLES_ALLOW_PRIVATE_ADDRESSES" in check.message


# -- public URL -----------------------------------------------------------------------------------


def test_url_nothing_answers(make_app):
    app = make_app(HALLES_URL=f"http://127.0.0.1:{closed_port()}", SECRET_KEY=STRONG)
    check = run(doctor.check_public_url, app)
    assert check.status == FAIL and "does not answer as this node" in check.message
    assert "systemctl status halles-web" in check.fix


def test_url_answered_by_another_node(make_app):
    with JsonServer({"id": "https://elsewhere.example.org/actor", "type": "Organization"}) as other:
        app = make_app(HALLES_URL=other.url, SECRET_KEY=STRONG)
        check = run(doctor.check_public_url, app)
    assert check.status == FAIL and "another server or another node" in check.message


def test_url_plain_http_on_a_public_name(make_app):
    app = make_app(HALLES_URL="http://halles.example.org", SECRET_KEY=STRONG)
    check = run(doctor.check_public_url, app)
    assert check.status == FAIL and "is not https" in check.message


# -- TLS ------------------------------------------------------------------------------------------


@pytest.fixture
def tls_node(make_app, tmp_path, monkeypatch):
    """``tls_node(trusted=True, **validity)`` -> app whose public URL is an https server with a
    certificate from a test CA (trusted through REQUESTS_CA_BUNDLE, or not)."""
    ca = TestCA(tmp_path / "ca")
    started = []

    def _make(*, trusted: bool = True, **validity):
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        if trusted:
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca.path))
        else:
            monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        certificate = ca.issue(f"server-{len(started)}", **validity)
        server = JsonServer({"id": "x"}, tls=(certificate.cert, certificate.key)).__enter__()
        started.append(server)
        return make_app(HALLES_URL=server.url, SECRET_KEY=STRONG)

    yield _make
    for server in started:
        server.__exit__(None, None, None)


def test_tls_valid_certificate(tls_node):
    check = run(doctor.check_tls, tls_node())
    assert check.status == OK and "Halles Test CA" in check.message


def test_tls_certificate_nobody_trusts(tls_node):
    check = run(doctor.check_tls, tls_node(trusted=False))
    assert check.status == FAIL and "will refuse the certificate" in check.message
    assert "certbot" in check.fix


def test_tls_expired_certificate(tls_node):
    now = dt.datetime.now(dt.UTC)
    check = run(doctor.check_tls, tls_node(not_before=now - dt.timedelta(days=100),
                                           not_after=now - dt.timedelta(days=2)))
    assert check.status == FAIL and "expired on" in check.message


def test_tls_certificate_about_to_expire(tls_node):
    check = run(doctor.check_tls, tls_node(not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=5)))
    assert check.status == WARN and "expires in 4 days" in check.message


def test_tls_nothing_listening(make_app):
    app = make_app(HALLES_URL=f"https://127.0.0.1:{closed_port()}", SECRET_KEY=STRONG)
    check = run(doctor.check_tls, app)
    assert check.status == FAIL and "no TLS connection" in check.message


# -- secret key -----------------------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["changeme", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"])
def test_secret_key_trivial(make_app, secret):
    check = run(doctor.check_secret_key, make_app(SECRET_KEY=secret))
    assert check.status == FAIL and "well-known or trivial" in check.message


def test_secret_key_too_short_in_production(make_app):
    app = make_app(SECRET_KEY="Kd8#mQ2!xZ7pL4vR", HALLES_URL="https://halles.example.org")
    check = run(doctor.check_secret_key, app)
    assert check.status == FAIL and "only 16 characters" in check.message


def test_secret_key_file_readable_by_everyone(make_app, monkeypatch):
    monkeypatch.delenv("HALLES_SECRET_KEY", raising=False)
    app = make_app(SECRET_KEY=STRONG)
    secret_file = Path(app.config["HALLES_INSTANCE"]) / "secret_key"
    secret_file.write_text(STRONG)
    secret_file.chmod(0o644)
    check = run(doctor.check_secret_key, app)
    assert check.status == FAIL and "can be read by other users" in check.message
    assert check.fix == f"chmod 600 {secret_file}"
    secret_file.chmod(0o600)
    assert run(doctor.check_secret_key, app).status == OK


# -- database and schema --------------------------------------------------------------------------


def test_database_file_missing(make_app, tmp_path):
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'typo' / 'halles.db'}", SECRET_KEY=STRONG)
    check = run(doctor.check_database, app, Context())
    assert check.status == FAIL and "no database file" in check.message
    assert not (tmp_path / "typo" / "halles.db").exists()


def test_database_server_not_listening(make_app):
    url = f"postgresql+psycopg://halles:secret@127.0.0.1:{closed_port()}/halles"
    app = make_app(SQLALCHEMY_DATABASE_URI=url, SECRET_KEY=STRONG)
    context = Context()
    check = run(doctor.check_database, app, context)
    assert check.status == FAIL and "cannot connect to postgresql+psycopg://halles:***@127.0.0.1" in check.message
    assert "secret" not in check.message and not context.database_ok
    assert run(doctor.check_schema, app, context).status == SKIP


def test_database_that_does_not_exist(make_app, pg_databases):
    url = pg_databases().rsplit("/", 1)[0] + "/halles_no_such_database"
    check = run(doctor.check_database, make_app(SQLALCHEMY_DATABASE_URI=url, SECRET_KEY=STRONG), Context())
    assert check.status == FAIL and 'database "halles_no_such_database" does not exist' in check.message


def test_schema_not_migrated(make_app):
    from flask_migrate import downgrade

    from node import MIGRATIONS_DIR

    app = make_app(SECRET_KEY=STRONG)
    with app.app_context():
        downgrade(directory=MIGRATIONS_DIR, revision="base")
    check = run(doctor.check_schema, app)
    assert check.status == FAIL and "no Halles tables yet" in check.message and check.fix == "run `halles db upgrade`"


def test_schema_from_a_newer_version(make_app):
    from sqlalchemy import text

    from node.extensions import db

    app = make_app(SECRET_KEY=STRONG)
    with app.app_context():
        db.session.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
        db.session.commit()
    check = run(doctor.check_schema, app)
    assert check.status == FAIL and "upgraded by a newer Halles" in check.message and "9999_future" in check.message


# -- SMTP -----------------------------------------------------------------------------------------


def test_smtp_nothing_listening(make_app):
    app = make_app(HALLES_SMTP_URL=f"smtp://127.0.0.1:{closed_port()}", SECRET_KEY=STRONG)
    check = run(doctor.check_smtp, app)
    assert check.status == FAIL and "cannot talk to the mail server" in check.message


def test_smtp_answers(make_app, smtp_server):
    check = run(doctor.check_smtp, make_app(HALLES_SMTP_URL=smtp_server.url, SECRET_KEY=STRONG))
    assert check.status == OK


def test_smtp_credentials_for_a_server_without_authentication(make_app, smtp_server):
    url = f"smtp://user:pass@127.0.0.1:{smtp_server.port}"
    check = run(doctor.check_smtp, make_app(HALLES_SMTP_URL=url, SECRET_KEY=STRONG))
    assert check.status == FAIL and "does not support" in check.message


def test_smtp_not_configured(make_app):
    check = run(doctor.check_smtp, make_app(HALLES_SMTP_URL="", SECRET_KEY=STRONG))
    assert check.status == WARN and "stay queued" in check.message


# -- keys -----------------------------------------------------------------------------------------


def test_key_file_missing(make_app):
    app = make_app(SECRET_KEY=STRONG)
    (Path(app.config["HALLES_INSTANCE"]) / "keys" / "rsa.pem").unlink()
    check = run(doctor.check_keys, app)
    assert check.status == FAIL and "rsa key" in check.message and "halles restore" in check.fix


def test_key_file_readable_by_others(make_app):
    app = make_app(SECRET_KEY=STRONG)
    path = Path(app.config["HALLES_INSTANCE"]) / "keys" / "ed25519.pem"
    path.chmod(0o644)
    check = run(doctor.check_keys, app)
    assert check.status == FAIL and "mode 0644" in check.message and check.fix == f"chmod 600 {path}"


def test_key_file_damaged(make_app):
    app = make_app(SECRET_KEY=STRONG)
    (Path(app.config["HALLES_INSTANCE"]) / "keys" / "rsa.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n")
    check = run(doctor.check_keys, app)
    assert check.status == FAIL and "not a valid private key" in check.message


# -- worker ---------------------------------------------------------------------------------------


def test_worker_never_ran(make_app):
    check = run(doctor.check_worker, make_app(SECRET_KEY=STRONG))
    assert check.status == FAIL and "never run" in check.message


def test_worker_stale_heartbeat(make_app):
    app = make_app(SECRET_KEY=STRONG)
    heartbeat(app, age=3 * 3600)
    check = run(doctor.check_worker, app)
    assert check.status == FAIL and "last ran 3 hours ago" in check.message


def test_worker_alive_after_a_real_run(make_app):
    from node import worker

    app = make_app(SECRET_KEY=STRONG)
    worker.run_once(app)
    assert run(doctor.check_worker, app).status == OK


# -- disk -----------------------------------------------------------------------------------------


def test_disk_nearly_full(make_app, tmp_path):
    """A real small filesystem (tmpfs of 2 MB) where mounting is allowed, else a threshold above the
    free space of the test machine."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True).returncode == 0
    try:
        if mounted:
            app = make_app(HALLES_INSTANCE=str(mount_point), SECRET_KEY=STRONG)
        else:
            app = make_app(SECRET_KEY=STRONG, HALLES_DISK_FAIL_MB=10**9, HALLES_DISK_WARN_MB=2 * 10**9)
        check = run(doctor.check_disk, app)
    finally:
        if mounted:
            subprocess.run(["umount", str(mount_point)], check=True)
    assert check.status == FAIL and "MB free" in check.message and "free some space" in check.fix


def test_disk_getting_low_is_a_warning(make_app):
    app = make_app(SECRET_KEY=STRONG, HALLES_DISK_FAIL_MB=0, HALLES_DISK_WARN_MB=10**9)
    assert run(doctor.check_disk, app).status == WARN


# -- peers and clock ------------------------------------------------------------------------------


def test_peer_unreachable(make_app):
    app = make_app(SECRET_KEY=STRONG)
    gone = f"http://127.0.0.1:{closed_port()}/actor"
    add_peer(app, gone)
    check = run(doctor.check_peers, app)
    assert check.status == WARN and "1 of 1 peers unreachable" in check.message and gone in check.message


def test_peer_reachable_and_no_peers(make_app):
    app = make_app(SECRET_KEY=STRONG)
    first = run(doctor.check_peers, app)
    assert first.status == OK and "no peers yet" in first.message and "halles peer request" in first.fix
    with JsonServer({"id": "peer", "type": "Organization"}) as peer:
        add_peer(app, f"{peer.url}/actor")
        assert run(doctor.check_peers, app).status == OK


def test_peer_behind_a_blocked_domain_is_not_checked(make_app):
    from node.extensions import db
    from node.fedi.models import RemoteServer

    app = make_app(SECRET_KEY=STRONG)
    port = closed_port()
    add_peer(app, f"http://127.0.0.1:{port}/actor")
    with app.app_context():
        db.session.add(RemoteServer(domain=f"127.0.0.1:{port}", blocked=True))
        db.session.commit()
    assert "no peers yet" in run(doctor.check_peers, app).message


@pytest.mark.parametrize(("offset", "status", "words"), [
    (-600, FAIL, "10 minutes ahead of"),
    (90, WARN, "seconds behind"),
    (0, OK, "clock agrees with"),
])
def test_clock_compared_with_a_peer(make_app, offset, status, words):
    app = make_app(SECRET_KEY=STRONG)
    with JsonServer({"id": "peer", "type": "Organization"}, clock_offset=offset) as peer:
        add_peer(app, f"{peer.url}/actor")
        context = Context(database_ok=True)
        assert run(doctor.check_peers, app, context).status == OK
        check = run(doctor.check_clock, app, context)
    assert check.status == status and words in check.message and peer.url in check.message


def test_clock_unknown_is_skipped_politely(make_app):
    check = run(doctor.check_clock, make_app(SECRET_KEY=STRONG))
    assert check.status == SKIP and "could not be compared" in check.message and "timedatectl" in check.fix
