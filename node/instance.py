"""The instance folder of a node: settings (node.json), secret key, node keys, SQLite database.

Keys live as PEM files (mode 0600) beside the database so that a backup of the folder (or
``halles backup``) carries the node's identity with its data."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from node.config import new_secret_key

KEY_FILES = {"ed25519": "keys/ed25519.pem", "rsa": "keys/rsa.pem"}


def _write_private(path: Path, data: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(data)


def generate_keys(folder: Path) -> list[str]:
    """Create missing node keys; never overwrite one (it is the node's identity)."""
    created = []
    for kind, relative in KEY_FILES.items():
        path = folder / relative
        if path.exists():
            continue
        key = ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else rsa.generate_private_key(65537, 2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        _write_private(path, pem)
        created.append(f"created {kind} key {path}")
    return created


def initialise_instance(
    folder: Path, *, name: str, city: str, url: str, address: str = "", force: bool = False
) -> list[str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"--url {url!r} must be the public origin, e.g. https://halles.example.org")
    if not name.strip() or not city.strip():
        raise ValueError("--name and --city must not be empty")
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    node_file = folder / "node.json"
    if node_file.exists() and not force:
        raise FileExistsError(f"{node_file} already exists: this instance is initialised (use --force to rewrite it)")
    node_file.write_text(
        json.dumps(
            {"name": name.strip(), "city": city.strip(), "url": url.rstrip("/"), "address": address.strip()},
            ensure_ascii=False,
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    lines.append(f"wrote {node_file}")
    secret_file = folder / "secret_key"
    if not secret_file.exists():
        _write_private(secret_file, new_secret_key() + "\n")
        lines.append(f"wrote {secret_file}")
    lines.extend(generate_keys(folder))

    from flask_migrate import upgrade

    from node import MIGRATIONS_DIR, create_app

    os.environ["HALLES_INSTANCE"] = str(folder)
    app = create_app({"HALLES_INSTANCE": str(folder)} if "DATABASE_URL" in os.environ else None)
    with app.app_context():
        upgrade(directory=MIGRATIONS_DIR)
        lines.append(f"database ready at {app.config['SQLALCHEMY_DATABASE_URI'].split('@')[-1]}")
        lines.extend(_load_charter_templates(app))
    lines.append("next: `halles admin create YOU@EXAMPLE.ORG`, then `halles run`")
    return lines


def _load_charter_templates(app) -> list[str]:
    try:
        from node.charters.services import publish_default_charter
    except ImportError:
        return []
    return publish_default_charter(app)
