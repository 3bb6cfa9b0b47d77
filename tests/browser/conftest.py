"""Browser fixtures: one headless chromium per session (Debian's /usr/bin/chromium driven by Playwright),
a page per test, nodes served on 127.0.0.1 by a threaded WSGI server."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from tests.browser.support import ensure_axe, launch, require_chromium
from tests.support.smtp import free_port

pytestmark = pytest.mark.browser


class Served:
    """An app served over HTTP in a background thread (like tests/support/nodes.py)."""

    def __init__(self, app) -> None:
        self.app = app
        self.port = int(app.config["HALLES_URL"].rsplit(":", 1)[1])
        self.url = app.config["HALLES_URL"]
        self.server = make_server("127.0.0.1", self.port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def browser() -> Iterator:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser):
    """``new_page(locale="fr-FR", width=1280, javascript=True)``: a fresh context (cookies) and page."""
    contexts = []

    def _new(*, locale: str = "fr-FR", width: int = 1280, javascript: bool = True, bypass_csp: bool = False):
        context = browser.new_context(locale=locale, viewport={"width": width, "height": 900},
                                      java_script_enabled=javascript, bypass_csp=bypass_csp)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield _new
    for context in contexts:
        context.close()


@pytest.fixture
def serve(make_app):
    """``serve(**config)`` -> a served app on a free port, stopped after the test."""
    served: list[Served] = []

    def _serve(**config) -> Served:
        port = free_port()
        app = make_app(HALLES_URL=f"http://127.0.0.1:{port}", **config)
        item = Served(app)
        served.append(item)
        return item

    yield _serve
    for item in served:
        item.stop()


@pytest.fixture(scope="session")
def axe_script():
    require_chromium()
    return ensure_axe()
