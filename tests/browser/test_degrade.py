"""Progressive enhancement: the map falls back to the list when tiles cannot load or JavaScript is off,
and the widget partners paste into their sites shows the filtered events."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.smtp import free_port
from tests.web.seed import seed

pytestmark = pytest.mark.browser


def test_map_shows_markers_when_tiles_load(serve, new_page):
    from tests.browser.screenshots import PLAIN_TILE

    node = serve(HALLES_TILE_URL=PLAIN_TILE)
    seed(node.app)
    page = new_page()
    page.goto(f"{node.url}/map")
    page.wait_for_selector(".leaflet-tile-loaded")
    assert page.locator("#map").is_visible()
    # Our site (with the events in its rooms) and the cinema of the screening: two markers.
    assert page.locator(".leaflet-marker-icon").count() == 2
    page.locator(".leaflet-marker-icon.map-pin-place").click()
    popup = page.locator(".leaflet-popup-content")
    assert "Les Halles Civiques — Belleville" in popup.inner_text()
    assert "tirage au sort" in popup.inner_text()  # an event in one of its rooms


def test_map_gives_way_to_the_list_when_tiles_fail(serve, new_page):
    dead = f"http://127.0.0.1:{free_port()}/{{z}}/{{x}}/{{y}}.png"  # nothing listens there
    node = serve(HALLES_TILE_URL=dead)
    seed(node.app)
    page = new_page()
    page.goto(f"{node.url}/map")
    note = page.locator("#map-note")
    note.wait_for(state="visible", timeout=12_000)
    assert "liste" in note.inner_text()
    assert not page.locator("#map").is_visible()
    assert page.locator("#map-events + ul li").count() >= 3


def test_map_page_without_javascript_is_the_list(serve, new_page):
    node = serve()
    seed(node.app)
    page = new_page(javascript=False)
    page.goto(f"{node.url}/map")
    assert not page.locator("#map").is_visible()
    assert page.locator("#map-events + ul li").count() >= 3
    # The agenda's filters work without JavaScript too (a plain GET form).
    page.goto(f"{node.url}/events")
    page.locator("details.filters summary").click()
    page.get_by_label("Ville").select_option("Paris")
    page.get_by_role("button", name="Voir les événements").click()
    assert "city=Paris" in page.url and page.locator(".card").count() >= 1


class PartnerSite:
    """Another website (another origin) that pastes the widget's snippet into one of its pages."""

    def __init__(self, html: str) -> None:
        body = html.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's hook name
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_partner_site_embeds_the_widget_with_the_script(serve, new_page):
    node = serve()
    seed(node.app)
    partner = PartnerSite(f"""<!doctype html><html lang="fr"><head><title>Partenaire</title></head><body>
      <h1>Le site d'un partenaire</h1>
      <div data-halles-events="category=debate&amp;scope=local"></div>
      <script src="{node.url}/embed.js" async></script></body></html>""")
    try:
        page = new_page()
        page.goto(partner.url)
        frame = page.wait_for_selector("iframe").content_frame()
        frame.wait_for_selector(".embed-list a")
        titles = frame.locator(".embed-list a").all_inner_texts()
        assert titles == ["Débat : le tirage au sort peut-il sauver la démocratie locale ?"]
        assert frame.locator(".embed-list a").first.get_attribute("target") == "_blank"
        # The frame told the page its height, and the script resized it.
        page.wait_for_function("() => parseInt(document.querySelector('iframe').style.height || '0') > 100")
    finally:
        partner.stop()
