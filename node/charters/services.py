"""Charter rules: which version is current, publishing a new one, and organisations signing it.

A charter version is a text rendered once from a template (``{{ place_name }}``, ``{{ city }}``...),
stored with the SHA-256 of its UTF-8 bytes. Signing means sending that hash back: the signer proves
which exact text they read, and the federation attests the same (URL, version, hash) to its peers."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Flask, current_app
from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from node.charters.models import CharterSignature, CharterVersion
from node.common.errors import Conflict, InvalidInput, NotFound
from node.common.permissions import require_admin, require_manager_of
from node.common.timeutil import iso_utc, utcnow, zone
from node.extensions import db
from node.mail.services import queue_email
from node.organisations.models import Organisation

#: charter_templates/ at the root of the repository; HALLES_CHARTER_TEMPLATES overrides it.
TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "charter_templates"
#: The network charter published by ``halles init``: French first, then English, in one signed body.
DEFAULT_TEMPLATES = ("charte-reseau.fr.md", "network-charter.en.md")
DEFAULT_VERSION = "1.0"
DEFAULT_TITLE = "Charte du réseau des tiers-lieux civiques / Network charter of civic third-places"
LANGUAGE_SEPARATOR = "\n\n---\n\n"
TEMPLATE_VARIABLES = ("place_name", "city", "url", "version", "date")
VERSION_PATTERN = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,39}$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")

#: Called as ``hook(version, must_resign)`` after a version is published, before the caller commits
#: (the federation re-attests the charter to its peers).
CHARTER_PUBLISHED_HOOKS: list[Callable[[CharterVersion, list[Organisation]], None]] = []


class CharterTemplateError(InvalidInput):
    """A charter template that cannot be rendered: syntax error or a variable the node does not know."""


# -- reading ---------------------------------------------------------------------------------------


def current_version() -> CharterVersion | None:
    return db.session.scalar(select(CharterVersion).where(CharterVersion.is_current.is_(True)))


def has_signed_current(organisation_id: int | None) -> bool:
    """True when the organisation signed the current charter, or when no charter is published yet."""
    if organisation_id is None:
        return False
    version = current_version()
    if version is None:
        return True
    return (
        db.session.scalar(
            select(CharterSignature.id).where(
                CharterSignature.organisation_id == organisation_id,
                CharterSignature.charter_version_id == version.id,
                CharterSignature.sha256 == version.sha256,
            )
        )
        is not None
    )


def signed_current_ids() -> set[int]:
    """Ids of the organisations that signed the current version (every id counts when none exists)."""
    version = current_version()
    if version is None:
        return set(db.session.scalars(select(Organisation.id)))
    return set(
        db.session.scalars(
            select(CharterSignature.organisation_id).where(
                CharterSignature.charter_version_id == version.id, CharterSignature.sha256 == version.sha256
            )
        )
    )


def organisations_to_sign() -> list[Organisation]:
    """Active organisations that have not signed the current version, by name (none if no charter)."""
    if current_version() is None:
        return []
    signed = signed_current_ids()
    return [
        org
        for org in db.session.scalars(
            select(Organisation).where(Organisation.deleted_at.is_(None)).order_by(Organisation.name)
        )
        if org.id not in signed
    ]


def get_version(version: str) -> CharterVersion:
    found = db.session.scalar(select(CharterVersion).where(CharterVersion.version == version))
    if found is None:
        raise NotFound(f"there is no charter version {version!r}; GET /api/v1/charter/versions lists them")
    return found


def all_versions() -> list[CharterVersion]:
    return list(db.session.scalars(select(CharterVersion).order_by(CharterVersion.published_at.desc(),
                                                                   CharterVersion.id.desc())))


def charter_url() -> str:
    return f"{current_app.config['HALLES_URL']}/charter.txt"


def version_url(version: CharterVersion) -> str:
    return f"{current_app.config['HALLES_URL']}/charter/{version.version}.txt"


def version_dict(version: CharterVersion, *, with_body: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "version": version.version,
        "title": version.title,
        "sha256": version.sha256,
        "published_at": iso_utc(version.published_at),
        "current": version.is_current,
        "url": charter_url() if version.is_current else version_url(version),
        "version_url": version_url(version),
    }
    if with_body:
        data["body"] = version.body
    return data


# -- rendering -------------------------------------------------------------------------------------


def templates_dir() -> Path:
    return Path(current_app.config.get("HALLES_CHARTER_TEMPLATES") or TEMPLATES_DIR)


def node_variables(version: str, when: datetime | None = None) -> dict[str, str]:
    """The values a charter template may use; ``date`` is the publication day in the node's zone."""
    config = current_app.config
    local_day = (when or datetime.now(zone(config["HALLES_TIMEZONE"]))).date().isoformat()
    return {
        "place_name": config["HALLES_NAME"],
        "city": config["HALLES_CITY"],
        "url": config["HALLES_URL"],
        "version": version,
        "date": local_day,
    }


def _environment() -> SandboxedEnvironment:
    # Sandboxed: a charter body posted through the API must not reach Python internals.
    return SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


def render_charter(text: str, variables: dict[str, str]) -> str:
    """Replace ``{{ var }}`` with the node's values. Unknown variables and syntax errors raise a
    CharterTemplateError naming them and the variables that exist."""
    env = _environment()
    known = ", ".join("{{ " + name + " }}" for name in variables)
    try:
        parsed = env.parse(text)
    except TemplateSyntaxError as exc:
        raise CharterTemplateError(
            f"the charter template has a syntax error on line {exc.lineno}: {exc.message}; "
            f"variables are written like {{{{ city }}}} (known: {known})"
        ) from None
    unknown = sorted(meta.find_undeclared_variables(parsed) - set(variables))
    if unknown:
        names = ", ".join("{{ " + name + " }}" for name in unknown)
        raise CharterTemplateError(f"unknown variable {names} in the charter template; known variables: {known}")
    try:
        return env.from_string(text).render(**variables)
    except TemplateError as exc:
        raise CharterTemplateError(f"the charter template cannot be rendered: {exc}") from None


def normalise_body(text: str) -> str:
    """One canonical form, so the hash does not depend on the editor: LF line ends, no trailing
    spaces at the end of the text, exactly one final newline."""
    return text.replace("\r\n", "\n").replace("\r", "\n").rstrip() + "\n"


def sha256_hex(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


# -- publishing ------------------------------------------------------------------------------------


def _contacts(organisation: Organisation) -> list[str]:
    """The organisation's contact address, or else its managers' addresses."""
    if organisation.contact_email:
        return [organisation.contact_email]
    from node.members.models import User

    return list(
        db.session.scalars(
            select(User.email).where(
                User.organisation_id == organisation.id, User.role == "org_manager", User.active.is_(True)
            )
        )
    )


def _queue_resign_emails(version: CharterVersion, organisations: list[Organisation]) -> None:
    place = current_app.config["HALLES_NAME"]
    # The queue's subject column holds 300 characters; a long place name must not break publishing.
    subject = f"[{place}] Nouvelle charte à signer / New charter to sign — version {version.version}"[:300]
    for organisation in organisations:
        body = (
            f"Bonjour,\n\n"
            f"{place} a publié la version {version.version} de sa charte : « {version.title} ».\n"
            f"Pour que {organisation.name} reste membre du lieu et du réseau, un·e responsable de "
            f"l'organisation doit la relire et la signer.\n\n"
            f"Texte : {charter_url()}\n"
            f"Empreinte SHA-256 du texte (à renvoyer pour signer) : {version.sha256}\n"
            f"Signer : POST {current_app.config['HALLES_URL']}/api/v1/charter/signatures "
            f'{{"organisation_id": {organisation.id}, "sha256": "{version.sha256}"}}\n'
            f"ou demandez à la personne qui gère le lieu.\n\n"
            f"---\n\n"
            f"Hello,\n\n"
            f"{place} published version {version.version} of its charter: \"{version.title}\".\n"
            f"For {organisation.name} to remain a member of the place and the network, one of its managers "
            f"needs to read and sign it.\n\n"
            f"Text: {charter_url()}\n"
            f"SHA-256 of the text (send it back to sign): {version.sha256}\n"
            f"Sign: POST {current_app.config['HALLES_URL']}/api/v1/charter/signatures "
            f'{{"organisation_id": {organisation.id}, "sha256": "{version.sha256}"}}\n'
            f"or ask the place's office manager.\n"
        )
        for address in _contacts(organisation):
            queue_email(address, subject, body)


def publish_charter(actor: Any, text: str, version: str, title: str) -> tuple[CharterVersion, list[Organisation]]:
    """Render ``text`` (a template or plain text) with the node's variables, store it as the current
    version and return it with the active organisations that must (re-)sign it; each of them is sent
    an email. ``actor`` None means the command line; otherwise it must be an admin. Does not commit."""
    if actor is not None:
        require_admin(actor, "publish a charter version")
    version = (version or "").strip()
    title = (title or "").strip()
    if not VERSION_PATTERN.match(version):
        raise InvalidInput(
            f"version {version!r} is not valid: use 1 to 40 letters, digits, dots, hyphens or underscores, "
            "starting with a letter or digit (e.g. 1.1 or 2026-03)"
        )
    if not 1 <= len(title) <= 200:
        raise InvalidInput("the charter needs a title of 1 to 200 characters")
    if db.session.scalar(select(CharterVersion.id).where(CharterVersion.version == version)) is not None:
        raise Conflict(f"charter version {version} already exists; publish the new text under a new version number")
    body = normalise_body(render_charter(text, node_variables(version)))
    if not body.strip():
        raise InvalidInput("the charter text is empty")
    digest = sha256_hex(body)
    same = db.session.scalar(select(CharterVersion).where(CharterVersion.sha256 == digest))
    if same is not None:
        raise Conflict(
            f"this text is identical to version {same.version} (SHA-256 {digest}); nothing new to sign"
        )
    # Lock the current row (PostgreSQL) so two concurrent publications cannot both stay current.
    for previous in db.session.scalars(
        select(CharterVersion).where(CharterVersion.is_current.is_(True)).with_for_update()
    ):
        previous.is_current = False
    db.session.flush()
    charter = CharterVersion(version=version, title=title, body=body, sha256=digest,
                             published_at=utcnow(), is_current=True)
    db.session.add(charter)
    db.session.flush()
    must_resign = organisations_to_sign()
    _queue_resign_emails(charter, must_resign)
    for hook in CHARTER_PUBLISHED_HOOKS:
        hook(charter, must_resign)
    return charter, must_resign


def publish_default_charter(app: Flask) -> list[str]:
    """``halles init``: publish the network charter (fr + en) as version 1.0 with the node's name and
    city, unless a charter exists already. Commits. Returns lines to print."""
    with app.app_context():
        existing = current_version() or db.session.scalar(select(CharterVersion).limit(1))
        if existing is not None:
            return [f"charter: version {existing.version} already published, kept as it is"]
        folder = templates_dir()
        paths = [folder / name for name in DEFAULT_TEMPLATES]
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            return [
                f"charter: template not found ({', '.join(missing)}); publish yours with "
                "`halles charter publish FILE --version 1.0`"
            ]
        text = LANGUAGE_SEPARATOR.join(path.read_text(encoding="utf-8").strip() for path in paths)
        charter, _ = publish_charter(None, text, DEFAULT_VERSION, DEFAULT_TITLE)
        db.session.commit()
        return [
            f"published the network charter, version {charter.version} (SHA-256 {charter.sha256}) at {charter_url()}",
            f"adapt it from {folder} (see README.md there), then `halles charter publish FILE --version 1.1`",
        ]


# -- signing ---------------------------------------------------------------------------------------


def find_signature(organisation_id: int, version_id: int) -> CharterSignature | None:
    return db.session.scalar(
        select(CharterSignature).where(
            CharterSignature.organisation_id == organisation_id,
            CharterSignature.charter_version_id == version_id,
        )
    )


def sign_charter(actor: Any, organisation_id: int, version_id: int, sha256: str) -> CharterSignature:
    """Record that ``organisation_id`` signed charter version ``version_id``. ``sha256`` must be the
    version's hash; only the current version can be signed. Signing twice returns the first signature.
    Does not commit."""
    require_manager_of(actor, organisation_id, "sign the charter for this organisation")
    organisation = db.session.get(Organisation, organisation_id)
    if organisation is None or organisation.deleted_at is not None:
        raise NotFound(f"there is no organisation {organisation_id}")
    version = db.session.get(CharterVersion, version_id)
    if version is None:
        raise NotFound(f"there is no charter version with id {version_id}")
    digest = (sha256 or "").strip().lower()
    if not SHA256_PATTERN.match(digest):
        raise InvalidInput("sha256 must be the 64 hexadecimal characters of the charter text's SHA-256")
    if not version.is_current:
        current = current_version()
        detail = f"charter version {version.version} is no longer current and cannot be signed"
        if current is not None:
            detail += (
                f": version {current.version} replaced it on {iso_utc(current.published_at)}; "
                f"read {charter_url()} and sign its SHA-256 {current.sha256}"
            )
        raise Conflict(detail)
    if digest != version.sha256:
        raise InvalidInput(
            f"the SHA-256 you sent does not match the text of charter version {version.version} "
            f"({version.sha256}); download {charter_url()}, make sure it is the text you read, and send its hash"
        )
    existing = find_signature(organisation_id, version_id)
    if existing is not None:
        return existing
    signature = CharterSignature(organisation_id=organisation_id, charter_version_id=version_id,
                                 signed_by_id=actor.id, signed_at=utcnow(), sha256=digest)
    try:
        # A savepoint: if a concurrent request signed first, keep theirs instead of failing.
        with db.session.begin_nested():
            db.session.add(signature)
    except IntegrityError:
        existing = find_signature(organisation_id, version_id)
        if existing is None:
            raise
        return existing
    return signature


def sign_current(actor: Any, organisation_id: int, sha256: str) -> tuple[CharterSignature, bool]:
    """Sign the current version with the hash the signer computed; returns (signature, created).

    A hash of an older version gets the 409 of ``sign_charter`` (the signer read an outdated text)."""
    current = current_version()
    if current is None:
        raise NotFound("no charter is published yet, so there is nothing to sign")
    digest = (sha256 or "").strip().lower()
    target = current
    if digest != current.sha256:
        older = db.session.scalar(select(CharterVersion).where(CharterVersion.sha256 == digest))
        if older is not None:
            target = older
    before = find_signature(organisation_id, target.id)
    signature = sign_charter(actor, organisation_id, target.id, digest)
    return signature, before is None


def signatures_overview() -> dict[str, Any]:
    """For staff: every signature, and who must (re-)sign the current version."""
    from node.members.models import User

    current = current_version()
    rows = db.session.execute(
        select(CharterSignature, CharterVersion, Organisation, User)
        .join(CharterVersion, CharterSignature.charter_version_id == CharterVersion.id)
        .join(Organisation, CharterSignature.organisation_id == Organisation.id)
        .outerjoin(User, CharterSignature.signed_by_id == User.id)
        .order_by(CharterSignature.signed_at.desc(), CharterSignature.id.desc())
    ).all()
    last_signed: dict[int, str] = {}
    signatures = []
    for signature, version, organisation, user in rows:
        last_signed.setdefault(organisation.id, version.version)
        signatures.append(
            {
                "organisation_id": organisation.id,
                "organisation_name": organisation.name,
                "version": version.version,
                "sha256": signature.sha256,
                "signed_at": iso_utc(signature.signed_at),
                "signed_by": None if user is None else {"id": user.id, "name": user.name, "email": user.email},
            }
        )
    must_sign = [
        {
            "organisation_id": org.id,
            "organisation_name": org.name,
            "contact_email": org.contact_email,
            "last_signed_version": last_signed.get(org.id),
        }
        for org in organisations_to_sign()
    ]
    return {
        "current": None if current is None else {"version": current.version, "sha256": current.sha256},
        "signatures": signatures,
        "must_sign": must_sign,
    }
