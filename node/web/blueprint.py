"""The ``web`` blueprint object, in its own module so that every page module can import it without
importing the others (``views.py`` imports them all, which registers their routes)."""

from flask import Blueprint

web = Blueprint("web", __name__)
