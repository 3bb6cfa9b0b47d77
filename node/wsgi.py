"""WSGI entry point for gunicorn: ``gunicorn node.wsgi:app``."""

from node import create_app

app = create_app()
