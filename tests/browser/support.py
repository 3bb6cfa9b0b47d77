"""What the browser tests and the screenshots share: Debian's chromium launched headless, axe-core
installed once from npm into a cache folder, and a small network of two real nodes (Paris, seeded as
a full third-place, and Lyon) peered over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.support.requirements import missing

CHROMIUM = os.environ.get("HALLES_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE_VERSION = "4.10.3"
INSTALL_TIMEOUT = 300


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        missing("browser", f"{CHROMIUM} not found (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("browser", "the Python package playwright is not installed")


def launch(playwright: Any):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


# --- axe-core ---------------------------------------------------------------------------------------


def axe_dir() -> Path:
    configured = os.environ.get("HALLES_AXE_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "halles" / f"axe-core-{AXE_VERSION}"


def _axe_installed(folder: Path) -> Path | None:
    script = folder / "node_modules" / "axe-core" / "axe.min.js"
    manifest = folder / "node_modules" / "axe-core" / "package.json"
    try:
        if json.loads(manifest.read_text())["version"] == AXE_VERSION and script.exists():
            return script
    except (OSError, ValueError, KeyError):
        return None
    return None


def ensure_axe() -> Path:
    """The path of axe.min.js, installed with npm on first use; skip (or fail in CI) if impossible."""
    folder = axe_dir()
    script = _axe_installed(folder)
    if script is not None:
        return script
    npm = shutil.which("npm")
    if not npm:
        missing("browser", "npm is needed to install axe-core for the accessibility checks")
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "package.json"
    if not manifest.exists():
        manifest.write_text(json.dumps({"name": "halles-axe", "private": True}))
    try:
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", f"axe-core@{AXE_VERSION}"], cwd=folder,
                              capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        missing("browser", f"npm install axe-core failed: {exc}")
    script = _axe_installed(folder)
    if done.returncode != 0 or script is None:
        missing("browser", f"npm install axe-core@{AXE_VERSION} failed: {done.stderr[-2000:]}")
    return script


def axe_violations(page: Any, script: Path, *, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict]:
    """Run axe-core (WCAG 2.0/2.1 A and AA rules) on the page; the violations of the given impacts."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=script.read_text(encoding="utf-8"))
    result = page.evaluate(
        """async () => await window.axe.run(document, {
            runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']},
            resultTypes: ['violations']
        })"""
    )
    return [v for v in result["violations"] if v.get("impact") in impacts]


def describe(violations: list[dict]) -> str:
    lines = []
    for violation in violations:
        targets = [", ".join(node["target"]) for node in violation["nodes"][:3]]
        lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']} — {'; '.join(targets)}")
    return "\n".join(lines)


# --- a small network --------------------------------------------------------------------------------


def _at(day: date, hour: int, tz: str = "Europe/Paris") -> str:
    return datetime.combine(day, datetime.min.time().replace(hour=hour), tzinfo=ZoneInfo(tz)).isoformat()


def lyon_events(lyon: Any, today: date) -> dict[str, dict]:
    """Events of the Lyon node, created through its API: one accessible debate, one workshop."""
    from tests.network.helpers import create_event, signed_organisation

    org = signed_organisation(lyon, "Collectif Lyon Commun")
    day = today + timedelta(days=3)
    debate = create_event(
        lyon, org, "Débat citoyen : l'eau, un bien commun",
        description="Un débat ouvert sur la gestion publique de l'eau, avec interprétation en langue des signes.",
        starts_at=_at(day, 18), ends_at=_at(day, 20), city="Lyon", address="12 rue Pierre Dupont",
        postal_code="69001", place_name="La Fabrique Commune", latitude=45.7705, longitude=4.8295,
        accessibility={"step_free": True, "sign_language": True}, capacity=40, category="debate",
    )
    later = today + timedelta(days=6)
    workshop = create_event(
        lyon, org, "Atelier : écrire une pétition locale",
        description="Méthodes et outils pour porter une demande auprès de la métropole.",
        starts_at=_at(later, 14), ends_at=_at(later, 17), city="Lyon", address="12 rue Pierre Dupont",
        postal_code="69001", place_name="La Fabrique Commune", latitude=45.7705, longitude=4.8295,
        accessibility={"quiet_room": True}, category="workshop",
    )
    return {"debate": debate, "workshop": workshop}


def publish_network_charter(app: Any) -> None:
    """Publish the real network charter (fr + en templates) as the current version: the tests' nodes
    start with a one-line charter, which makes poor screenshots."""
    from node.charters import services as charters
    from node.extensions import db

    with app.app_context():
        folder = charters.templates_dir()
        text = charters.LANGUAGE_SEPARATOR.join(
            (folder / name).read_text(encoding="utf-8").strip() for name in charters.DEFAULT_TEMPLATES)
        charters.publish_charter(None, text, "1.1", charters.DEFAULT_TITLE)
        db.session.commit()


def build_network(make_app: Any, *, lyon_config: dict[str, Any] | None = None, full_charter: bool = False,
                  **paris_config: Any) -> tuple[Any, Any, Any, dict[str, dict]]:
    """Paris (seeded as a full third-place) and Lyon, mutually peered, served on 127.0.0.1.
    Returns (paris, lyon, seeded data of Paris, Lyon's events)."""
    from tests.network.helpers import mutual
    from tests.support.nodes import Node, settle
    from tests.web.seed import seed

    paris = Node(make_app, name="Les Halles Civiques", city="Paris",
                 HALLES_ADDRESS="24 rue de Belleville, 75020 Paris", **paris_config).start()
    lyon = Node(make_app, name="La Fabrique Commune", city="Lyon", **(lyon_config or {})).start()
    nodes = [paris, lyon]
    if full_charter:
        publish_network_charter(paris.app)
    data = seed(paris.app)
    mutual(paris, lyon, nodes)
    events = lyon_events(lyon, data.today)
    settle(nodes)
    return paris, lyon, data, events
