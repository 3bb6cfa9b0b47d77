"""``halles doctor``: checks the configuration and the environment of a node and says, in plain
words, what to fix. One line per check: OK, WARN (works, but look at it), FAIL (broken: fix it) or
SKIP (could not be checked, e.g. no server to compare the clock with). Any FAIL -> exit code 1.

Each check is a function ``(app, context) -> Check``; ``context`` carries what one check learned for
another (the Date headers seen, whether the database answered). Network checks use short timeouts so
a dead server costs seconds, not minutes."""

from __future__ import annotations

import ipaddress
import os
import shutil
import smtplib
import socket
import ssl
import stat
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from flask import Flask

from node.instance import KEY_FILES

OK, WARN, FAIL, SKIP = "OK", "WARN", "FAIL", "SKIP"
NETWORK_TIMEOUT = 5.0
#: The worker writes its heartbeat about every second; /healthz uses the same limit.
WORKER_STALE_SECONDS = 120
#: Below this free space in the instance folder: FAIL / WARN (megabytes). Overridable in the config.
DISK_FAIL_MB = 500
DISK_WARN_MB = 2048
#: Clock difference with another server: WARN from here, FAIL from CLOCK_FAIL_SECONDS (signed
#: requests and proofs carry times; far-off clocks get them refused and events shown at wrong hours).
CLOCK_WARN_SECONDS = 60
CLOCK_FAIL_SECONDS = 300
#: A certificate expiring within this many days gets a warning (Let's Encrypt renews at 30).
TLS_WARN_DAYS = 14
MIN_SECRET_LENGTH = 32
WEAK_SECRETS = {"changeme", "change-me", "secret", "password", "dev", "development", "test", "halles", "x",
                "please-change-me", "replace-me"}


@dataclass
class Check:
    name: str
    status: str
    message: str
    #: What to do about it (empty when nothing is to be done).
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name:<9} {self.message}"
        return f"{text} -> {self.fix}" if self.fix else text


@dataclass
class Context:
    """What checks learn for other checks."""

    #: (source, Date header value) of every HTTP response seen, for the clock check.
    dates: list[tuple[str, str]] = field(default_factory=list)
    database_ok: bool = False

    def session(self) -> requests.Session:
        session = requests.Session()

        def remember_date(response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
            if response.headers.get("Date"):
                self.dates.append((response.url, response.headers["Date"]))

        session.hooks["response"].append(remember_date)
        session.headers["User-Agent"] = "Halles doctor"
        return session


def _is_local_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def _production(app: Flask) -> bool:
    """A node whose public URL is a real, public name (not an address for trying Halles out)."""
    return not _is_local_host(urlsplit(app.config.get("HALLES_URL", "")).hostname)


def _reason(exc: BaseException) -> str:
    """The most telling part of a network error, in one line."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        inner = exc.__cause__ or exc.__context__
        if inner is None or inner is exc:
            break
        exc = inner
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


# -- settings -------------------------------------------------------------------------------------


def check_settings(app: Flask, context: Context) -> Check:
    from node.config import ConfigError, validate

    try:
        validate(app.config)
    except ConfigError as exc:
        problems = [line.strip(" -") for line in str(exc).splitlines()[1:] if line.strip()]
        return Check("settings", FAIL, "; ".join(problems) or str(exc),
                     "fix these values in the environment file (.env or /etc/halles/halles.env) and restart")
    config = app.config
    warnings = []
    url = str(config.get("HALLES_URL", ""))
    if url.startswith("https://") and not config.get("HALLES_BEHIND_PROXY"):
        warnings.append("HALLES_URL is https but HALLES_BEHIND_PROXY is false (gunicorn does not speak TLS: behind "
                        "nginx or Caddy set HALLES_BEHIND_PROXY=true)")
    if _production(app) and config.get("HALLES_ALLOW_PRIVATE_ADDRESSES"):
        warnings.append("HALLES_ALLOW_PRIVATE_ADDRESSES=true on a public node lets remote servers make it call "
                        "addresses of your own network; set it to false")
    if warnings:
        return Check("settings", WARN, "; ".join(warnings), "change these values and restart")
    return Check("settings", OK, "every setting is valid")


# -- public URL and TLS ---------------------------------------------------------------------------


def check_public_url(app: Flask, context: Context) -> Check:
    from federation.errors import FetchError
    from federation.fetch import fetch_document

    url = app.config["HALLES_URL"]
    parts = urlsplit(url)
    problems_first = []
    if parts.scheme != "https":
        if _production(app):
            return Check("url", FAIL, f"{url} is not https: other nodes and browsers need https on a public server",
                         "set HALLES_URL=https://your.domain, put nginx or Caddy with a certificate in front "
                         "(docs/deploy.md)")
        problems_first.append(f"{url} is a local address: fine to try Halles, but other nodes cannot reach it")
    try:
        fetched = fetch_document(context.session(), f"{url}/actor", allow_private=True, timeout=NETWORK_TIMEOUT)
    except FetchError as exc:
        return Check("url", FAIL, f"{url} does not answer as this node ({exc})",
                     "check that the web service runs (systemctl status halles-web, or docker compose ps), that "
                     "the domain points to this server and that ports 80 and 443 are open")
    try:
        ours = _own_rsa_public_pem(app)
    except Exception as exc:  # noqa: BLE001 - the keys check says what is wrong with the keys
        ours = None
        problems_first.append(f"cannot compare the served key with ours ({_reason(exc)})")
    document = fetched.document
    public_key = document.get("publicKey") if isinstance(document.get("publicKey"), dict) else {}
    if document.get("id") != f"{url}/actor" or (ours is not None and public_key.get("publicKeyPem") != ours):
        return Check("url", FAIL, f"{url} is answered by another server or another node (actor "
                     f"{document.get('id')!r}, not this node's keys)",
                     "point the domain to this server, or fix HALLES_URL to the address this node is served at")
    if problems_first:
        return Check("url", WARN, "; ".join(problems_first) + "; the node answers there",
                     "use a public https address to join the network")
    return Check("url", OK, f"{url} answers as this node")


def _own_rsa_public_pem(app: Flask) -> str:
    from federation import keys
    from node.fedi.identity import load_identity

    return keys.public_key_to_pem(load_identity(app).rsa_key.public_key())


def _ca_file() -> str | None:
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        value = os.environ.get(name)
        if value and Path(value).is_file():
            return value
    return None


def _fetch_certificate(host: str, port: int, *, verify: bool) -> bytes:
    if verify:
        context = ssl.create_default_context(cafile=_ca_file())
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=NETWORK_TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            certificate = tls.getpeercert(binary_form=True)
    if not certificate:
        raise ssl.SSLError("the server sent no certificate")
    return certificate


def check_tls(app: Flask, context: Context) -> Check:
    from cryptography import x509

    parts = urlsplit(app.config["HALLES_URL"])
    if parts.scheme != "https" or not parts.hostname:
        return Check("tls", SKIP, "the public URL is not https, no certificate to check")
    host, port = parts.hostname, parts.port or 443
    trust_problem = ""
    try:
        der = _fetch_certificate(host, port, verify=True)
    except ssl.SSLCertVerificationError as exc:
        trust_problem = exc.verify_message or _reason(exc)
        try:
            der = _fetch_certificate(host, port, verify=False)
        except (OSError, ssl.SSLError) as inner:
            return Check("tls", FAIL, f"cannot read the certificate of {host}:{port} ({_reason(inner)})",
                         "check the proxy's TLS configuration")
    except (OSError, ssl.SSLError) as exc:
        return Check("tls", FAIL, f"no TLS connection to {host}:{port} ({_reason(exc)})",
                     "start the proxy (nginx or Caddy) and open port 443")
    certificate = x509.load_der_x509_certificate(der)
    expires = certificate.not_valid_after_utc
    days = (expires - datetime.now(UTC)).total_seconds() / 86400
    issuer = certificate.issuer.rfc4514_string()
    if days < 0:
        return Check("tls", FAIL, f"the certificate of {host} expired on {expires:%Y-%m-%d}",
                     "renew it: `certbot renew` (nginx) or restart Caddy, which renews by itself")
    if trust_problem:
        return Check("tls", FAIL, f"browsers and other nodes will refuse the certificate of {host}: {trust_problem} "
                     f"(issuer {issuer})",
                     "use a certificate from a public authority: `certbot --nginx -d DOMAIN` or Caddy's automatic "
                     "HTTPS")
    if days < TLS_WARN_DAYS:
        return Check("tls", WARN, f"the certificate of {host} expires in {int(days)} days ({expires:%Y-%m-%d})",
                     "check that automatic renewal works: `certbot renew --dry-run` or Caddy's logs")
    return Check("tls", OK, f"certificate valid until {expires:%Y-%m-%d} ({int(days)} days), issued by {issuer}")


# -- secret key -----------------------------------------------------------------------------------


def check_secret_key(app: Flask, context: Context) -> Check:
    secret = str(app.config.get("SECRET_KEY") or "")
    fix_new = ("run `halles init` (it writes instance/secret_key) or set HALLES_SECRET_KEY to the output of "
               "`python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`")
    if not secret:
        return Check("secret", FAIL, "no secret key: sessions and forms cannot be signed", fix_new)
    weak = secret.lower() in WEAK_SECRETS or len(set(secret)) < 8
    if weak:
        return Check("secret", FAIL, "the secret key is a well-known or trivial value: anyone could forge sessions",
                     fix_new)
    if len(secret) < MIN_SECRET_LENGTH:
        status = FAIL if _production(app) else WARN
        return Check("secret", status, f"the secret key has only {len(secret)} characters (at least "
                     f"{MIN_SECRET_LENGTH} needed)", fix_new)
    secret_file = Path(app.config["HALLES_INSTANCE"]) / "secret_key"
    if "HALLES_SECRET_KEY" not in os.environ and secret_file.exists():
        mode = stat.S_IMODE(secret_file.stat().st_mode)
        if mode & 0o077:
            return Check("secret", FAIL, f"{secret_file} can be read by other users (mode {mode:04o})",
                         f"chmod 600 {secret_file}")
    return Check("secret", OK, f"secret key of {len(secret)} characters")


# -- database -------------------------------------------------------------------------------------


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display
        return "(unparsable URL)"


def _engine(url: str):
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        connect_args["connect_timeout"] = int(NETWORK_TIMEOUT)
    return create_engine(url, poolclass=NullPool, connect_args=connect_args)


def sqlite_path(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def check_database(app: Flask, context: Context) -> Check:
    from sqlalchemy import text

    url = app.config["SQLALCHEMY_DATABASE_URI"]
    shown = _safe_url(url)
    path = sqlite_path(url) if url.startswith("sqlite") else None
    if path is not None and not path.exists():
        # Connecting would create an empty file and hide the mistake.
        return Check("database", FAIL, f"no database file at {path}",
                     "run `halles init` for a new node, fix DATABASE_URL, or `halles restore BACKUP`")
    try:
        engine = _engine(url)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - every failure is reported
        return Check("database", FAIL, f"cannot connect to {shown} ({_reason(exc)})",
                     "check DATABASE_URL (host, port, user, password, database name) and that PostgreSQL runs "
                     "(systemctl status postgresql, or docker compose ps db)")
    context.database_ok = True
    return Check("database", OK, f"connected to {shown}")


def migration_heads() -> set[str]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from node import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", MIGRATIONS_DIR)
    return set(ScriptDirectory.from_config(config).get_heads())


def known_revisions() -> set[str]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from node import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", MIGRATIONS_DIR)
    return {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}


def database_revisions(url: str) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    engine = _engine(url)
    try:
        with engine.connect() as connection:
            return set(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()


def check_schema(app: Flask, context: Context) -> Check:
    if not context.database_ok:
        return Check("schema", SKIP, "the database is not reachable (see above)")
    current = database_revisions(app.config["SQLALCHEMY_DATABASE_URI"])
    heads = migration_heads()
    if not current:
        return Check("schema", FAIL, "the database has no Halles tables yet", "run `halles db upgrade`")
    unknown = current - known_revisions()
    if unknown:
        return Check("schema", FAIL, "the database was upgraded by a newer Halles (revision "
                     f"{', '.join(sorted(unknown))} is unknown to this version)",
                     "install the newer Halles again, or restore a backup made by this version")
    if current != heads:
        return Check("schema", FAIL, f"the database schema is at {', '.join(sorted(current))}, this version of Halles "
                     f"needs {', '.join(sorted(heads))}", "run `halles db upgrade` (safe at every start)")
    return Check("schema", OK, f"schema up to date (revision {', '.join(sorted(current))})")


# -- SMTP -----------------------------------------------------------------------------------------


def check_smtp(app: Flask, context: Context) -> Check:
    url = str(app.config.get("HALLES_SMTP_URL") or "")
    if not url:
        return Check("smtp", WARN, "HALLES_SMTP_URL is empty: invitations, password resets and registration "
                     "confirmations stay queued", "set HALLES_SMTP_URL=smtp+starttls://user:password@host:587")
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    try:
        port = parts.port or {"smtps": 465, "smtp+starttls": 587}.get(parts.scheme, 25)
    except ValueError:
        return Check("smtp", FAIL, "HALLES_SMTP_URL has an invalid port", "fix HALLES_SMTP_URL")
    where = f"{host}:{port}"
    try:
        if parts.scheme == "smtps":
            client: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=NETWORK_TIMEOUT,
                                                    context=ssl.create_default_context(cafile=_ca_file()))
        else:
            client = smtplib.SMTP(host, port, timeout=NETWORK_TIMEOUT)
        try:
            code, answer = client.ehlo()
            if code != 250:
                return Check("smtp", FAIL, f"the mail server at {where} refused EHLO ({code} "
                             f"{answer.decode(errors='replace')[:100]})",
                             "check HALLES_SMTP_URL with your mail provider")
            if parts.scheme == "smtp+starttls":
                client.starttls(context=ssl.create_default_context(cafile=_ca_file()))
                client.ehlo()
            if parts.username:
                client.login(unquote(parts.username), unquote(parts.password or ""))
        finally:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()
    except smtplib.SMTPAuthenticationError:
        return Check("smtp", FAIL, f"the mail server at {where} refused the user name or password",
                     "fix the user and password in HALLES_SMTP_URL (special characters must be %-encoded)")
    except smtplib.SMTPNotSupportedError as exc:
        return Check("smtp", FAIL, f"the mail server at {where} does not support what is asked ({_reason(exc)})",
                     "use smtps:// (port 465) or smtp+starttls:// (port 587) as your provider says")
    except (OSError, smtplib.SMTPException) as exc:
        return Check("smtp", FAIL, f"cannot talk to the mail server at {where} ({_reason(exc)})",
                     "check the host and port in HALLES_SMTP_URL and that this server may reach it (some hosts "
                     "block port 25: use 587)")
    return Check("smtp", OK, f"mail server {where} answers")


# -- node keys ------------------------------------------------------------------------------------


def public_key_fingerprint(pem: bytes) -> str:
    """``SHA256:...`` of the public half of a private key PEM (as ``federation.keys.fingerprint``)."""
    from federation import keys

    return keys.fingerprint(keys.load_private_key(pem).public_key())


def check_keys(app: Flask, context: Context) -> Check:
    folder = Path(app.config["HALLES_INSTANCE"])
    found = []
    for kind, relative in KEY_FILES.items():
        path = folder / relative
        if not path.exists():
            return Check("keys", FAIL, f"the node's {kind} key {path} is missing: other nodes cannot verify what "
                         "this node signs",
                         "restore it from your backup (`halles restore BACKUP`); only for a brand-new node, "
                         "`halles init --force` creates new keys (peers would then see a different node)")
        try:
            fingerprint = public_key_fingerprint(path.read_bytes())
        except PermissionError:
            return Check("keys", FAIL, f"{path} cannot be read by this user ({os.geteuid()})",
                         f"run as the service user, or `chown halles: {path}`")
        except (ValueError, TypeError) as exc:
            return Check("keys", FAIL, f"{path} is not a valid private key ({_reason(exc)})",
                         "restore the keys from your backup")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            return Check("keys", FAIL, f"{path} can be read by other users (mode {mode:04o})", f"chmod 600 {path}")
        found.append(f"{kind} {fingerprint}")
    return Check("keys", OK, "node keys present and private (" + ", ".join(found) + ")")


# -- worker ---------------------------------------------------------------------------------------


def check_worker(app: Flask, context: Context) -> Check:
    heartbeat = Path(app.config["HALLES_INSTANCE"]) / "worker.heartbeat"
    fix = "start it: `systemctl restart halles-worker` (or `docker compose up -d worker`); see its log with " \
          "`journalctl -u halles-worker`"
    try:
        last = float(heartbeat.read_text())
    except FileNotFoundError:
        return Check("worker", FAIL, "the worker has never run here: emails and federation deliveries wait", fix)
    except (OSError, ValueError) as exc:
        return Check("worker", FAIL, f"cannot read the worker heartbeat {heartbeat} ({_reason(exc)})", fix)
    age = time.time() - last
    if age > WORKER_STALE_SECONDS:
        return Check("worker", FAIL, f"the worker last ran {_duration(age)} ago: emails and federation deliveries "
                     "wait", fix)
    return Check("worker", OK, f"worker alive (last run {age:.0f} s ago)")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} seconds"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} hours"
    return f"{seconds / 86400:.0f} days"


# -- disk -----------------------------------------------------------------------------------------


def check_disk(app: Flask, context: Context) -> Check:
    folder = Path(app.config["HALLES_INSTANCE"])
    target = folder if folder.exists() else folder.parent
    usage = shutil.disk_usage(target)
    free_mb = usage.free / 1_048_576
    fail_mb = float(app.config.get("HALLES_DISK_FAIL_MB", DISK_FAIL_MB))
    warn_mb = float(app.config.get("HALLES_DISK_WARN_MB", DISK_WARN_MB))
    where = f"{free_mb:.0f} MB free for {folder}"
    fix = "free some space (old backups, `journalctl --vacuum-size=200M`, `docker system prune`) or grow the disk"
    if free_mb < fail_mb:
        return Check("disk", FAIL, f"only {where}: the database, backups and logs will stop being written", fix)
    if free_mb < warn_mb:
        return Check("disk", WARN, f"{where}, getting low", fix)
    return Check("disk", OK, where)


# -- peers and clock ------------------------------------------------------------------------------


def accepted_peers() -> list[str]:
    """Actor URLs of every accepted follow relation (both directions), blocked servers left out."""
    from sqlalchemy import select

    from node.extensions import db
    from node.fedi.models import Follow, RemoteActor, RemoteServer

    blocked = set(db.session.scalars(select(RemoteServer.domain).where(RemoteServer.blocked.is_(True))))
    rows = db.session.scalars(
        select(RemoteActor).join(Follow, Follow.actor_id == RemoteActor.id).where(Follow.state == "accepted")
    )
    return sorted({actor.ap_id for actor in rows if actor.domain not in blocked})


def check_peers(app: Flask, context: Context) -> Check:
    from federation.errors import FetchError
    from federation.fetch import fetch_document

    if not context.database_ok:
        return Check("peers", SKIP, "the database is not reachable (see above)")
    peers = accepted_peers()
    if not peers:
        return Check("peers", OK, "no peers yet", "to join the network: `halles peer request https://OTHER-NODE` "
                     "(docs/deploy.md)")
    session = context.session()
    unreachable = []
    for actor in peers:
        try:
            fetch_document(session, actor, allow_private=bool(app.config.get("HALLES_ALLOW_PRIVATE_ADDRESSES")),
                           timeout=NETWORK_TIMEOUT)
        except FetchError as exc:
            unreachable.append(f"{actor} ({exc})")
    if unreachable:
        return Check("peers", WARN, f"{len(unreachable)} of {len(peers)} peers unreachable: " + "; ".join(unreachable),
                     "deliveries to them are retried; if it lasts, tell their admin (`halles peer list`)")
    return Check("peers", OK, f"all {len(peers)} peers answer")


def check_clock(app: Flask, context: Context) -> Check:
    own = app.config["HALLES_URL"]
    # Another server's clock tells more than our own proxy's (often the same machine): peers first.
    ordered = sorted(context.dates, key=lambda item: item[0].startswith(own))
    for source, value in ordered:
        try:
            remote = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        if remote.tzinfo is None:
            continue
        skew = time.time() - remote.timestamp()
        # Date has whole seconds: up to one second of difference is rounding, not skew.
        label = "ahead of" if skew > 0 else "behind"
        origin = urlsplit(source)
        who = f"{origin.scheme}://{origin.netloc}"
        fix = "enable time synchronisation: `timedatectl set-ntp true` (systemd-timesyncd) or install chrony"
        if abs(skew) >= CLOCK_FAIL_SECONDS:
            return Check("clock", FAIL, f"this server's clock is {_duration(abs(skew))} {label} {who}: signed "
                         "requests will be refused", fix)
        if abs(skew) >= CLOCK_WARN_SECONDS:
            return Check("clock", WARN, f"this server's clock is {abs(skew):.0f} seconds {label} {who}", fix)
        return Check("clock", OK, f"clock agrees with {who} (within {max(abs(skew), 1):.0f} s)")
    return Check("clock", SKIP, "no other server answered, so the clock could not be compared",
                 "make sure time synchronisation is on: `timedatectl` should say 'System clock synchronized: yes'")


#: Order matters: the URL and peers checks collect the Date headers the clock check reads.
CHECKS: list[Callable[[Flask, Context], Check]] = [
    check_settings,
    check_public_url,
    check_tls,
    check_secret_key,
    check_database,
    check_schema,
    check_smtp,
    check_keys,
    check_worker,
    check_disk,
    check_peers,
    check_clock,
]


def run_checks(app: Flask) -> list[Check]:
    """Run every check inside an app context; a check that crashes is reported, never raised."""
    context = Context()
    results = []
    with app.app_context():
        for check in CHECKS:
            try:
                results.append(check(app, context))
            except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
                name = check.__name__.removeprefix("check_")
                results.append(Check(name, FAIL, f"the check itself failed: {type(exc).__name__}: {_reason(exc)}",
                                     "report this with the output of `halles doctor`"))
        from node.extensions import db

        db.session.remove()
    return results


def as_dicts(results: list[Check]) -> list[dict[str, str]]:
    return [asdict(result) for result in results]


def failed(results: list[Check]) -> bool:
    return any(result.status == FAIL for result in results)
