"""axe-core on every page type, signed out and signed in, phone and desktop widths: no serious or
critical WCAG 2.1 A/AA violation. Plus what axe cannot judge alone: the skip link and a visible focus."""

from __future__ import annotations

import pytest

from tests.browser.support import axe_violations, describe
from tests.web.remote import add_remote
from tests.web.seed import seed

pytestmark = pytest.mark.browser


def _sign_in(page, base: str, email: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("main form button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)


def page_paths(data, remote) -> tuple[list[str], dict[str, list[str]]]:
    """Every page type: (public paths, {email: paths for that signed-in person})."""
    debate, workshop = data.events["debate"], data.events["workshop"]
    public = [
        "/", "/events", "/events?when=custom&start_date=2001-01-01&end_date=2001-01-02", f"/events/{debate}",
        f"/events/{workshop}", f"/events/{remote.public_uuid}", "/map", "/subscribe", "/places",
        f"/rooms/{data.room_ids[0]}", "/directory", "/organisations/democratie-ouverte", "/charter", "/login",
        "/password-reset", "/embed", "/nowhere",
    ]
    signed_in = {
        data.manager_email: ["/manage", f"/manage/organisations/{data.org_ids['Démocratie Ouverte']}",
                             "/manage/events", "/manage/events/new", f"/manage/events/{workshop}/edit",
                             f"/manage/events/{debate}/registrations", "/manage/bookings", f"/events/{debate}",
                             f"/manage/events/{debate}/cancel", f"/manage/events/{debate}/delete"],
        data.unsigned_manager_email: [f"/manage/organisations/{data.org_ids['Collectif Nouvelles Voix']}/charter"],
        data.admin_email: ["/office", "/office/organisations", "/admin/users", "/admin/peers", "/admin/charter",
                           "/admin/settings", f"/manage/bookings/{data.booking_ids[0]}/cancel",
                           f"/manage/events/{remote.public_uuid}/delete"],
    }
    return public, signed_in


def deleted_event_page(app, data) -> str:
    """The page of a deleted event (410), after deleting the screening through the service."""
    from node.events import services as events
    from node.extensions import db
    from node.members.services import find_user_by_email

    with app.app_context():
        admin = find_user_by_email(data.admin_email)
        events.delete_event(admin, events.get_event(admin, data.events["screening"]))
        db.session.commit()
    return f"/events/{data.events['screening']}"


def test_every_page_type_passes_axe(serve, new_page, axe_script):
    node = serve()
    data = seed(node.app)
    remote = add_remote(node.app)
    debate = data.events["debate"]
    public, signed_in = page_paths(data, remote)
    public.append(deleted_event_page(node.app, data))
    problems: list[str] = []

    def check(page, path: str, width: int) -> None:
        page.goto(f"{node.url}{path}")
        found = axe_violations(page, axe_script)
        if found:
            problems.append(f"{path} at {width}px:\n{describe(found)}")

    # Every page on a phone (mobile first: narrow layouts are where regions scroll and menus wrap); the
    # desktop layout of the main page types too.
    desktop = {"/", "/events", f"/events/{debate}", "/map", f"/rooms/{data.room_ids[0]}", "/manage/events/new",
               "/office", "/admin/peers"}
    for width in (390, 1280):
        page = new_page(width=width, bypass_csp=True)  # axe is injected as an inline script
        for path in public:
            if width == 390 or path in desktop:
                check(page, path, width)
        for email, paths in signed_in.items():
            wanted = [path for path in paths if width == 390 or path in desktop]
            if not wanted:
                continue
            page = new_page(width=width, bypass_csp=True)
            _sign_in(page, node.url, email, data.password)
            for path in wanted:
                check(page, path, width)
    assert not problems, "\n\n".join(problems)


def test_skip_link_and_visible_focus(serve, new_page):
    node = serve()
    page = new_page()
    page.goto(f"{node.url}/")
    page.keyboard.press("Tab")
    skip = page.locator(".skip-link")
    assert skip.evaluate("el => el === document.activeElement")
    box = skip.bounding_box()
    assert box is not None and box["y"] >= 0  # it comes into view when focused
    outline = skip.evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline != "none"
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"
    # Every following stop has a visible focus indicator.
    for _ in range(6):
        page.keyboard.press("Tab")
        style = page.evaluate("() => { const s = getComputedStyle(document.activeElement);"
                              " return [s.outlineStyle, s.outlineWidth]; }")
        assert style[0] != "none" and style[1] != "0px", style


def test_pages_reflow_at_320_pixels(serve, new_page):
    """WCAG 1.4.10: at 320 CSS pixels nothing makes the page scroll sideways (wide tables scroll inside
    their own labelled region, which the reflow rule allows)."""
    node = serve()
    data = seed(node.app)
    public, signed_in = page_paths(data, add_remote(node.app))
    public.append(deleted_event_page(node.app, data))
    too_wide = []
    for email, paths in [(None, public), *signed_in.items()]:
        page = new_page(width=320)
        if email:
            _sign_in(page, node.url, email, data.password)
        for path in paths:
            page.goto(f"{node.url}{path}")
            width = page.evaluate("() => document.documentElement.scrollWidth")
            if width > 320:
                too_wide.append((path, width))
    assert not too_wide
