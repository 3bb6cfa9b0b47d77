"""WSGI entry point for gunicorn: ``gunicorn node.wsgi:app``."""

from node import create_app
from node.ops.runtime import settle

app = create_app()
settle()
