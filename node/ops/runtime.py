"""What a long-running node process does once it has started (``node/wsgi.py`` for gunicorn, ``halles
worker``).

``settle()`` sets the objects built while starting -- modules, the app, SQLAlchemy's mappers and
compiled statements -- aside from Python's cyclic garbage collector (``gc.freeze``). They live as long
as the process, yet every full collection walked all of them again: about 100,000 objects, a few tens
of milliseconds each time, which a burst of received activities (thousands of short-lived dicts)
triggers again and again. Measured in the ingest benchmark: 0.54 of the ceiling without, 0.58 with
(docs/performance.md). Under gunicorn with ``--preload`` the same call, made before the fork, also keeps
those pages shared between the processes (the use the ``gc.freeze`` documentation describes).

Only entry points call it, never ``create_app``: a test run makes hundreds of apps in one process, and
frozen objects are never collected."""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect what starting left behind, then freeze everything still alive."""
    gc.collect()
    gc.freeze()
