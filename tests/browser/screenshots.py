"""``python -m tests.browser.screenshots OUTDIR`` (``make screenshots``): seed two peered nodes, serve
them, and save PNGs of the main pages at phone (390 px) and desktop (1280 px) widths, for review.

Map tiles are served locally as a plain background so the pictures do not depend on the internet."""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

WIDTHS = {"phone": 390, "desktop": 1280}
_counter = itertools.count(1)
#: A plain beige 1x1 PNG as every map tile: the map renders offline, with its markers.
PLAIN_TILE = ("data:image/png;base64,"
              "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGN48eQGAAVcAqUe2cvmAAAAAElFTkSuQmCC")


def _make_app_factory(workdir: Path):
    from node import create_app
    from node.instance import generate_keys
    from tests.support.databases import DatabaseFactory

    databases = DatabaseFactory(workdir / "databases")
    (workdir / "databases").mkdir(parents=True, exist_ok=True)

    def make_app(**overrides):
        instance = workdir / f"instance-{next(_counter)}"
        instance.mkdir()
        generate_keys(instance)
        config = {
            "TESTING": True,
            "SECRET_KEY": "screenshots",
            "SQLALCHEMY_DATABASE_URI": databases.new(),
            "HALLES_INSTANCE": str(instance),
            "HALLES_ALLOW_PRIVATE_ADDRESSES": True,
        }
        config.update(overrides)
        return create_app(config)

    return make_app, databases


def pages(paris, data) -> list[tuple[str, str, str | None]]:
    """(name, path, who is signed in) of every page worth looking at."""
    debate = data.events["debate"]
    workshop = data.events["workshop"]
    org = data.org_ids["Démocratie Ouverte"]
    newcomer = data.org_ids["Collectif Nouvelles Voix"]
    return [
        ("home", "/", None),
        ("events", "/events", None),
        ("events-filtered", "/events?city=Lyon&accessible=sign_language", None),
        ("event", f"/events/{debate}", None),
        ("event-remote", "/events?scope=network&city=Lyon", None),
        ("map", "/map", None),
        ("subscribe", "/subscribe?city=Paris", None),
        ("places", "/places", None),
        ("room", f"/rooms/{data.room_ids[0]}", None),
        ("directory", "/directory", None),
        ("charter", "/charter", None),
        ("login", "/login", None),
        ("embed", "/embed", None),
        ("error-404", "/events/does-not-exist", None),
        ("manage", "/manage", data.manager_email),
        ("organisation-edit", f"/manage/organisations/{org}", data.manager_email),
        ("charter-sign", f"/manage/organisations/{newcomer}/charter", data.unsigned_manager_email),
        ("event-new", "/manage/events/new", data.manager_email),
        ("event-edit", f"/manage/events/{workshop}/edit", data.manager_email),
        ("registrations", f"/manage/events/{debate}/registrations", data.manager_email),
        ("bookings", "/manage/bookings", data.manager_email),
        ("manage-events", "/manage/events", data.manager_email),
        ("event-as-organiser", f"/events/{debate}", data.manager_email),
        ("event-cancel", f"/manage/events/{debate}/cancel", data.manager_email),
        ("event-delete", f"/manage/events/{workshop}/delete", data.manager_email),
        ("booking-cancel", f"/manage/bookings/{data.booking_ids[0]}/cancel", data.office_email),
        ("dashboard", "/office", data.office_email),
        ("office-organisations", "/office/organisations", data.office_email),
        ("users", "/admin/users", data.admin_email),
        ("peers", "/admin/peers", data.admin_email),
        ("admin-charter", "/admin/charter", data.admin_email),
        ("settings", "/admin/settings", data.admin_email),
    ]


def ask_to_peer(make_app, paris, lyon):
    """A third node, Marseille, asks Paris to peer (with its own, slightly different charter) and waits
    for the admin's answer: the peers page then has a request to show."""
    from tests.browser.support import publish_network_charter
    from tests.support.nodes import Node, settle

    marseille = Node(make_app, name="Le Comptoir des Quartiers", city="Marseille").start()
    publish_network_charter(marseille.app)
    result = marseille.cli("peer", "request", paris.url)
    assert result.exit_code == 0, result.output
    settle([paris, lyon, marseille])
    return marseille


def sign_in(page, base: str, email: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("form.panel button[type=submit]")
    page.wait_for_load_state("networkidle")


def take(outdir: Path, *, only: list[str] | None = None, lang: str = "fr") -> list[Path]:
    from playwright.sync_api import sync_playwright

    from tests.browser.support import build_network, launch

    outdir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="halles-shots-") as tmp:
        make_app, databases = _make_app_factory(Path(tmp))
        tiles = PLAIN_TILE
        paris, lyon, data, _events = build_network(make_app, full_charter=True, HALLES_TILE_URL=tiles)
        marseille = ask_to_peer(make_app, paris, lyon)
        try:
            event_remote = None
            with paris.app.app_context():
                from sqlalchemy import select

                from node.events.models import Event
                from node.extensions import db

                event_remote = db.session.scalar(select(Event.uuid).where(Event.origin_actor_id.is_not(None)))
            targets = pages(paris, data)
            with paris.app.app_context():
                from node.fedi.models import RemoteActor

                asking = db.session.scalar(select(RemoteActor.id).where(RemoteActor.ap_id == marseille.actor))
            if asking:
                targets.append(("peer-request", f"/admin/peers/{asking}", data.admin_email))
            if event_remote:
                targets = [(n, f"/events/{event_remote}" if n == "event-remote" else p, w) for n, p, w in targets]
            with sync_playwright() as playwright:
                browser = launch(playwright)
                for width_name, width in WIDTHS.items():
                    sessions: dict[str | None, object] = {}
                    for name, path, who in targets:
                        if only and name not in only:
                            continue
                        context = sessions.get(who)
                        if context is None:
                            context = browser.new_context(viewport={"width": width, "height": 900}, locale=lang,
                                                          device_scale_factor=1)
                            page = context.new_page()
                            page.goto(f"{paris.url}/?lang={lang}")
                            if who:
                                sign_in(page, paris.url, who, data.password)
                            page.close()
                            sessions[who] = context
                        page = context.new_page()
                        page.goto(f"{paris.url}{path}")
                        page.wait_for_load_state("networkidle")
                        target = outdir / f"{name}-{width_name}.png"
                        page.screenshot(path=str(target), full_page=True)
                        written.append(target)
                        page.close()
                    for context in sessions.values():
                        context.close()
                browser.close()
        finally:
            paris.stop()
            lyon.stop()
            marseille.stop()
            databases.drop_all()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--only", nargs="*", help="page names to take (default: all)")
    parser.add_argument("--lang", default="fr", choices=("fr", "en"))
    args = parser.parse_args(argv)
    written = take(args.outdir, only=args.only, lang=args.lang)
    for path in written:
        print(path)
    print(f"{len(written)} screenshots in {args.outdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
