"""Production behaviour of the app, applied by ``create_app`` on every node (not only in Docker):

- behind a reverse proxy (``HALLES_BEHIND_PROXY=true``), trust one hop of ``X-Forwarded-*`` so the
  app sees the visitor's address and ``https`` (ProxyFix);
- cookies are ``Secure`` when the public URL is https (a browser then never sends them in clear);
- security headers on every response: HSTS (https only), a strict Content-Security-Policy that
  allows the configured map tile host for images, ``X-Content-Type-Options``, ``Referrer-Policy``
  and no framing, except the embeddable widget (``/embed*``) that other sites put in an iframe;
- JSON logs, one object per line, when ``HALLES_LOG_FORMAT=json``.

Headers are set with ``setdefault``: a blueprint that knows better for its own pages (the web pages
set their own policy first) keeps its value; this layer covers everything else (API, federation,
static files, /healthz)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request
from werkzeug.middleware.proxy_fix import ProxyFix

from node.ops.logs import configure_json_logging

#: Two years, as HSTS preload lists ask; the node's public URL is https for good once set.
HSTS_SECONDS = 63_072_000
#: Paths other sites may frame: the embeddable event widget and its script.
FRAMABLE_PREFIXES = ("/embed",)


def init_app(app: Flask) -> None:
    config = app.config
    if config.get("HALLES_BEHIND_PROXY"):
        # One proxy hop (nginx or Caddy on the same machine or in the compose network): trusting more
        # would let a visitor forge their address with their own X-Forwarded-For.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1)  # type: ignore[method-assign]
    if is_https(config.get("HALLES_URL", "")):
        config["SESSION_COOKIE_SECURE"] = True
        config["REMEMBER_COOKIE_SECURE"] = True
        config["PREFERRED_URL_SCHEME"] = "https"
    config.setdefault("REMEMBER_COOKIE_HTTPONLY", True)
    config.setdefault("REMEMBER_COOKIE_SAMESITE", "Lax")
    if config.get("HALLES_LOG_FORMAT") == "json":
        configure_json_logging()
        from flask.logging import default_handler

        app.logger.removeHandler(default_handler)
    app.after_request(security_headers)


def is_https(url: str) -> bool:
    return urlsplit(str(url)).scheme == "https"


def tile_origin(tile_url: str) -> str:
    """The origin of the map tile server for ``img-src`` ('{s}' subdomains become a wildcard)."""
    parts = urlsplit((tile_url or "").replace("{s}", "tile-subdomain"))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc.replace('tile-subdomain', '*')}"


def is_framable(path: str) -> bool:
    return path.startswith(FRAMABLE_PREFIXES)


def content_security_policy(tile_url: str, *, framable: bool) -> str:
    images = " ".join(filter(None, ["'self'", "data:", tile_origin(tile_url)]))
    directives = [
        "default-src 'self'",
        f"img-src {images}",
        "script-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        # The widget is meant to be framed by any partner's site; everything else by no one.
        "frame-ancestors *" if framable else "frame-ancestors 'none'",
    ]
    return "; ".join(directives)


def security_headers(response: Response) -> Response:
    config = current_app.config
    framable = is_framable(request.path)
    headers = response.headers
    headers.setdefault("Content-Security-Policy",
                       content_security_policy(config.get("HALLES_TILE_URL") or "", framable=framable))
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    if not framable:
        headers.setdefault("X-Frame-Options", "DENY")
    if request.is_secure or is_https(config.get("HALLES_URL", "")):
        # Browsers ignore HSTS received over plain http, so sending it on an https node is always right.
        headers.setdefault("Strict-Transport-Security", f"max-age={HSTS_SECONDS}")
    return response
