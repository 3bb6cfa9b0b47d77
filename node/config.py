"""Configuration: defaults, then the instance's ``node.json`` (written by ``halles init``), then the
environment (``HALLES_*``, ``DATABASE_URL``), then an explicit mapping (tests). ``validate`` fails fast
with one line per wrong value, so an office manager can fix a ``.env`` without reading code."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ConfigError(Exception):
    """Raised when the configuration cannot work; its message lists every problem."""


TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}

#: env name -> (config key, kind); kinds are parsed by ``_parse`` with a clear error.
ENV_SETTINGS: dict[str, tuple[str, str]] = {
    "DATABASE_URL": ("SQLALCHEMY_DATABASE_URI", "str"),
    "HALLES_SECRET_KEY": ("SECRET_KEY", "str"),
    "HALLES_NAME": ("HALLES_NAME", "str"),
    "HALLES_CITY": ("HALLES_CITY", "str"),
    "HALLES_URL": ("HALLES_URL", "str"),
    "HALLES_ADDRESS": ("HALLES_ADDRESS", "str"),
    "HALLES_TIMEZONE": ("HALLES_TIMEZONE", "str"),
    "HALLES_LANGUAGE": ("HALLES_LANGUAGE", "str"),
    "HALLES_SMTP_URL": ("HALLES_SMTP_URL", "str"),
    "HALLES_MAIL_FROM": ("HALLES_MAIL_FROM", "str"),
    "HALLES_ALLOW_PRIVATE_ADDRESSES": ("HALLES_ALLOW_PRIVATE_ADDRESSES", "bool"),
    "HALLES_BEHIND_PROXY": ("HALLES_BEHIND_PROXY", "bool"),
    "HALLES_SECURE_COOKIES": ("SESSION_COOKIE_SECURE", "bool"),
    "HALLES_MAX_BODY_BYTES": ("MAX_CONTENT_LENGTH", "int"),
    "HALLES_TILE_URL": ("HALLES_TILE_URL", "str"),
    "HALLES_LOG_FORMAT": ("HALLES_LOG_FORMAT", "str"),
    "HALLES_DELIVERY_MAX_ATTEMPTS": ("HALLES_DELIVERY_MAX_ATTEMPTS", "int"),
    "HALLES_DELIVERY_BACKOFF_SECONDS": ("HALLES_DELIVERY_BACKOFF_SECONDS", "float"),
    "HALLES_DELIVERY_RETENTION_DAYS": ("HALLES_DELIVERY_RETENTION_DAYS", "int"),
    "HALLES_INBOX_RETENTION_DAYS": ("HALLES_INBOX_RETENTION_DAYS", "int"),
    "HALLES_SYNC_INTERVAL_SECONDS": ("HALLES_SYNC_INTERVAL_SECONDS", "float"),
    "HALLES_LISTING_CACHE_SECONDS": ("HALLES_LISTING_CACHE_SECONDS", "float"),
    "HALLES_RATE_LIMIT_INBOX": ("HALLES_RATE_LIMIT_INBOX", "str"),
    "HALLES_RATE_LIMIT_INBOX_PARTNERS": ("HALLES_RATE_LIMIT_INBOX_PARTNERS", "str"),
    "HALLES_RATE_LIMIT_REGISTRATIONS": ("HALLES_RATE_LIMIT_REGISTRATIONS", "str"),
    "HALLES_RATE_LIMIT_LOGIN": ("HALLES_RATE_LIMIT_LOGIN", "str"),
    "HALLES_RATE_LIMIT_BOOKING_REQUESTS": ("HALLES_RATE_LIMIT_BOOKING_REQUESTS", "str"),
}

DEFAULTS: dict[str, Any] = {
    "HALLES_NAME": "Halles",
    "HALLES_CITY": "Paris",
    "HALLES_URL": "http://127.0.0.1:5000",
    "HALLES_ADDRESS": "",
    "HALLES_TIMEZONE": "Europe/Paris",
    "HALLES_LANGUAGE": "fr",
    "HALLES_SMTP_URL": "",
    "HALLES_MAIL_FROM": "",
    "HALLES_ALLOW_PRIVATE_ADDRESSES": False,
    "HALLES_BEHIND_PROXY": False,
    "SESSION_COOKIE_SECURE": False,
    "MAX_CONTENT_LENGTH": 1_000_000,
    "HALLES_TILE_URL": "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
    "HALLES_LOG_FORMAT": "text",
    "HALLES_DELIVERY_MAX_ATTEMPTS": 12,
    "HALLES_DELIVERY_BACKOFF_SECONDS": 30.0,
    # Sent delivery rows are deleted after this many days, dead ones after three times as long.
    "HALLES_DELIVERY_RETENTION_DAYS": 30,
    # Received activities (applied or ignored) are deleted after this many days, failed ones after
    # three times as long (node/fedi/inbox_retention.py says why forgetting them is safe).
    "HALLES_INBOX_RETENTION_DAYS": 30,
    "HALLES_SYNC_INTERVAL_SECONDS": 300.0,
    # Anonymous listings and feeds are served from memory this long (node/common/microcache.py); 0: off.
    "HALLES_LISTING_CACHE_SECONDS": 1.0,
    # COUNT/PERIOD token buckets (node/common/ratelimit.py); "off" disables one.
    "HALLES_RATE_LIMIT_INBOX": "300/1m",
    "HALLES_RATE_LIMIT_INBOX_PARTNERS": "6000/1m",
    "HALLES_RATE_LIMIT_REGISTRATIONS": "30/10m",
    "HALLES_RATE_LIMIT_LOGIN": "10/5m",
    # Room requests from people without an account, per client address (each one emails the address
    # it names, so the limit also keeps the form from being used to flood someone's mailbox).
    "HALLES_RATE_LIMIT_BOOKING_REQUESTS": "10/1h",
    "SQLALCHEMY_TRACK_MODIFICATIONS": False,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "WTF_CSRF_TIME_LIMIT": None,
    "JSON_SORT_KEYS": False,
    "BABEL_DEFAULT_LOCALE": "fr",
    "BABEL_DEFAULT_TIMEZONE": "Europe/Paris",
}

LANGUAGES = ("fr", "en")


def instance_path() -> Path:
    return Path(os.environ.get("HALLES_INSTANCE", "instance")).resolve()


def _parse(env_name: str, kind: str, raw: str) -> Any:
    if kind == "bool":
        lowered = raw.strip().lower()
        if lowered in TRUE:
            return True
        if lowered in FALSE:
            return False
        raise ConfigError(f"{env_name}={raw!r} is not a yes/no value: use true or false")
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{env_name}={raw!r} is not a whole number") from None
    if kind == "float":
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{env_name}={raw!r} is not a number") from None
    return raw


def load(overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Merge defaults, the instance file, the environment and ``overrides`` into one dict."""
    environ = dict(os.environ if environ is None else environ)
    folder = Path(environ.get("HALLES_INSTANCE", "instance")).resolve()
    config: dict[str, Any] = dict(DEFAULTS)
    config["HALLES_INSTANCE"] = str(folder)
    config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{folder / 'halles.db'}"

    node_file = folder / "node.json"
    if node_file.exists():
        try:
            stored = json.loads(node_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError(f"{node_file} is not valid JSON ({exc}); fix it or run `halles init` again") from None
        for key in ("name", "city", "url", "address", "timezone", "language"):
            if key in stored:
                config[f"HALLES_{key.upper()}"] = stored[key]
    secret_file = folder / "secret_key"
    if secret_file.exists():
        config["SECRET_KEY"] = secret_file.read_text(encoding="utf-8").strip()

    problems: list[str] = []
    for env_name, (key, kind) in ENV_SETTINGS.items():
        if env_name in environ:
            try:
                config[key] = _parse(env_name, kind, environ[env_name])
            except ConfigError as exc:
                problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))
    if overrides:
        config.update(overrides)
    if config["SQLALCHEMY_DATABASE_URI"].startswith("postgres://"):
        # Heroku-style URLs; SQLAlchemy wants the explicit driver name.
        config["SQLALCHEMY_DATABASE_URI"] = "postgresql://" + config["SQLALCHEMY_DATABASE_URI"][len("postgres://"):]
    if config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql://"):
        config["SQLALCHEMY_DATABASE_URI"] = "postgresql+psycopg://" + config["SQLALCHEMY_DATABASE_URI"][
            len("postgresql://"):
        ]
    config["HALLES_URL"] = str(config["HALLES_URL"]).rstrip("/")
    config["BABEL_DEFAULT_LOCALE"] = config["HALLES_LANGUAGE"]
    config["BABEL_DEFAULT_TIMEZONE"] = config["HALLES_TIMEZONE"]
    return config


def validate(config: dict[str, Any]) -> None:
    """Raise ConfigError listing every wrong value, each with what to do about it."""
    problems: list[str] = []
    url = urlsplit(str(config.get("HALLES_URL", "")))
    if url.scheme not in ("http", "https") or not url.hostname:
        problems.append(f"HALLES_URL={config.get('HALLES_URL')!r} must be the public address, e.g. https://halles.example.org")
    elif url.path not in ("", "/") or url.query or url.fragment:
        problems.append("HALLES_URL must be a bare origin (scheme://host[:port]) with no path")
    db_url = str(config.get("SQLALCHEMY_DATABASE_URI", ""))
    if not db_url.startswith(("sqlite://", "postgresql+psycopg://")):
        problems.append(
            f"DATABASE_URL={db_url!r} is not supported: use postgresql://user@host/db or sqlite:///path/halles.db"
        )
    try:
        ZoneInfo(str(config.get("HALLES_TIMEZONE")))
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"HALLES_TIMEZONE={config.get('HALLES_TIMEZONE')!r} is not an IANA zone such as Europe/Paris")
    if config.get("HALLES_LANGUAGE") not in LANGUAGES:
        problems.append(f"HALLES_LANGUAGE={config.get('HALLES_LANGUAGE')!r} must be one of: {', '.join(LANGUAGES)}")
    smtp = str(config.get("HALLES_SMTP_URL") or "")
    if smtp:
        parts = urlsplit(smtp)
        if parts.scheme not in ("smtp", "smtps", "smtp+starttls") or not parts.hostname:
            problems.append(
                f"HALLES_SMTP_URL={smtp!r} must look like smtp://user:password@host:587 (schemes: smtp, "
                "smtp+starttls, smtps)"
            )
        else:
            try:
                parts.port  # noqa: B018 - raises ValueError on a bad port
            except ValueError:
                problems.append(f"HALLES_SMTP_URL={smtp!r} has an invalid port")
    max_body = config.get("MAX_CONTENT_LENGTH")
    if not isinstance(max_body, int) or max_body < 10_000:
        problems.append("HALLES_MAX_BODY_BYTES must be a number of bytes of at least 10000")
    secret = config.get("SECRET_KEY")
    if not secret:
        problems.append(
            "no secret key: run `halles init` (it writes instance/secret_key) or set HALLES_SECRET_KEY"
        )
    elif not config.get("TESTING") and url.scheme == "https" and len(str(secret)) < 32:
        problems.append("HALLES_SECRET_KEY is too short for production: use at least 32 random characters")
    attempts = config.get("HALLES_DELIVERY_MAX_ATTEMPTS")
    if not isinstance(attempts, int) or not 1 <= attempts <= 100:
        problems.append("HALLES_DELIVERY_MAX_ATTEMPTS must be a whole number between 1 and 100")
    for name in ("HALLES_DELIVERY_RETENTION_DAYS", "HALLES_INBOX_RETENTION_DAYS"):
        retention = config.get(name)
        if not isinstance(retention, int) or isinstance(retention, bool) or not 1 <= retention <= 3650:
            problems.append(f"{name} must be a whole number of days between 1 and 3650")
    for name in ("HALLES_DELIVERY_BACKOFF_SECONDS", "HALLES_SYNC_INTERVAL_SECONDS"):
        value = config.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            problems.append(f"{name} must be a positive number of seconds")
    cache_seconds = config.get("HALLES_LISTING_CACHE_SECONDS")
    if not isinstance(cache_seconds, int | float) or isinstance(cache_seconds, bool) or not 0 <= cache_seconds <= 60:
        problems.append("HALLES_LISTING_CACHE_SECONDS must be a number of seconds between 0 (off) and 60")
    if config.get("HALLES_LOG_FORMAT") not in ("text", "json"):
        problems.append("HALLES_LOG_FORMAT must be text or json")
    from node.common.ratelimit import parse_rate, validate_settings

    problems.extend(validate_settings(config))
    try:
        parse_rate(str(config.get("HALLES_RATE_LIMIT_BOOKING_REQUESTS", "")))
    except ValueError as exc:
        problems.append(f"HALLES_RATE_LIMIT_BOOKING_REQUESTS: {exc}")
    if problems:
        raise ConfigError("configuration problems:\n  - " + "\n  - ".join(problems))


def new_secret_key() -> str:
    return secrets.token_urlsafe(48)
