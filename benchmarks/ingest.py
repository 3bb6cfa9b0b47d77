"""Ingest: signed Create/Update activities (about 1.5 KB, from 5 origins) verified and stored through the
real inbox (``POST /inbox`` through the WSGI app: HTTP signature, FEP-8b32 proofs of the activity and of
the event, block and duplicate checks, rate-limit bucket, durable insert, 202), then applied by the real
worker (``process_inbox`` until nothing is pending: remote event and its occurrence stored).

How the activities arrive:

* ``batched`` -- as Halles nodes send a burst to each other: each origin posts its activities in batches
  of up to 100 (``inbox.is_batch``: one HTTP signature and one commit per batch, each activity still
  carrying and verified by its two proofs). This is the path the target is about.
* ``one-per-post`` -- one activity per POST, as Mastodon, Mobilizon or Gancio send (reported beside it).

Ceiling: JCS canonicalisation + Ed25519 verification of the same documents (the activity's proof and
the event's proof: two of each per activity), keys in hand, in the same process -- the work no inbox
can skip. Measured in the same process, next to the work it bounds: before each round of a single run,
and before and after a dual run (averaged).

Runs, each on a fresh database:

* ``single`` -- one process (one core), in rounds of 500 activities: the round's ceiling measured, its
  activities posted, then applied.
  - ``fast storage``: SQLite on tmpfs, PostgreSQL with ``synchronous_commit=off``: the code's cost;
  - ``durable``: the database on this machine's disk with every commit flushed (what fsync costs here).
* ``dual`` -- both cores, as a deployment runs: two web processes post half of the batches each while the
  worker applies at the same time (``halles worker``, one process, as deploy/ runs it); timed until
  everything is applied. ``WORKER_PROCESSES`` says why not ``--processes 2`` on PostgreSQL."""

from __future__ import annotations

import io
import json
import multiprocessing
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks import common
from benchmarks.origins import Origin, utc_now

NAME = "ingest"
ORIGINS = 5
#: The origins of every run (made once: key generation is slow).
ORIGIN_LIST: list[Origin] = []
#: Share of activities that are Updates of an event created earlier in the run.
UPDATE_SHARE = 0.3
INBOX_URL = "http://receiver.bench/inbox"
TARGET_SINGLE = 0.6
TARGET_DUAL = 1.0
#: Worker processes of the ``dual`` runs: one, as deploy/ (systemd, Docker) runs ``halles worker``. On
#: PostgreSQL ``--processes 2`` measured worse on these two cores (0.66 against 0.75 of the ceiling,
#: 2026-11-26): the web processes already keep both cores busy, and a second worker process adds its
#: own claims, smaller runs and server work (0.65 + 0.21 ms of CPU per activity against 0.61 + 0.14).
#: It is for machines with cores to spare.
WORKER_PROCESSES = 1
#: Runs of each mode the target is judged on (batched on one core, and on both), per backend: on a
#: shared VM one run's ratio moves by 5 % or more from the next's, which is the whole margin of a
#: verdict. The run of median ratio is reported; every run's ratio is kept (``repeats``).
TARGET_RUNS = 3


# --- documents -----------------------------------------------------------------------------------


#: Activities per batch: the inbox's MAX_BATCH_ITEMS, what a Halles node's delivery sends at most.
BATCH_SIZE = 100
#: Activities per round of a single run (``single``): 5 batches, one from each origin.
ROUND_SIZE = 500
#: Activities each benchmark process receives and applies before it is measured (``_warm_up``), of
#: events of their own (numbered from WARM_UP_FIRST): one batch from each origin.
WARM_UP_SIZE = 50
WARM_UP_FIRST = 10**6


def make_activities(count: int, origins: list[Origin], *, first: int = 0) -> list[tuple[Origin, dict[str, Any]]]:
    """``count`` signed activities with their origin: Creates of new events (numbered from ``first``),
    and Updates (newer ``updated``) of earlier ones."""
    now = utc_now()
    activities = []
    created: list[tuple[int, Origin]] = []
    for index in range(count):
        is_update = created and (index * 7919) % 100 < UPDATE_SHARE * 100
        if is_update:
            number, origin = created[(index * 31) % len(created)]
            kind = "Update"
        else:
            number, origin = first + index, origins[index % len(origins)]
            created.append((number, origin))
            kind = "Create"
        start = now + timedelta(days=7 + number % 300, hours=number % 10)
        obj = origin.event_object(number, updated=now + timedelta(milliseconds=index), start=start)
        activities.append((origin, origin.signed_activity(kind, obj, now=now)))
    return activities


def one_per_post(activities) -> list[tuple[bytes, dict[str, str]]]:
    """A signed POST per activity."""
    now = utc_now()
    return [origin.signed_post(INBOX_URL, activity, now=now) for origin, activity in activities]


def batched_posts(activities, size: int = BATCH_SIZE) -> list[tuple[bytes, dict[str, str]]]:
    """Each origin's activities, in order, in signed batch POSTs of up to ``size``."""
    now = utc_now()
    by_origin: dict[str, tuple[Origin, list[dict[str, Any]]]] = {}
    for origin, activity in activities:
        by_origin.setdefault(origin.actor_url, (origin, []))[1].append(activity)
    posts = []
    for origin, items in by_origin.values():
        for first in range(0, len(items), size):
            batch = {"@context": "https://www.w3.org/ns/activitystreams",
                     "id": f"{origin.identity.base_url}/batches/{uuid.uuid4()}", "type": "Announce",
                     "actor": origin.actor_url, "object": items[first:first + size]}
            posts.append(origin.signed_post(INBOX_URL, batch, now=now))
    return posts


def ceiling_rate(activities, origins: list[Origin], *, repeat: int = 3) -> float:
    """Activities per second when only JCS + Ed25519 verification of their two proofs is done."""
    from federation.keys import multibase_decode
    from federation.proofs import hash_data, unsecured_document

    keys = {}
    for origin in origins:
        for key_id, record in origin.key_records().items():
            keys[key_id] = record.public_key
    # As the inbox gets them: read from the bytes of a POST (no object shared with the signer).
    documents = [json.loads(json.dumps(activity)) for _origin, activity in activities]

    def work() -> int:
        for activity in documents:
            for document in (activity, activity["object"]):
                proof = document["proof"]
                config = {key: value for key, value in proof.items() if key != "proofValue"}
                config["@context"] = document["@context"]
                keys[proof["verificationMethod"]].verify(
                    multibase_decode(proof["proofValue"]), hash_data(unsecured_document(document), config))
        return len(documents)

    return common.best_rate(work, repeat=repeat)


# --- one node ------------------------------------------------------------------------------------


def _config(workdir: Path, url: str) -> dict[str, Any]:
    config = common.node_config(workdir, url, name="Receveur", city="Paris", url="http://receiver.bench")
    # The inbox's per-server budget is part of the path (its bucket is taken on every POST) but a
    # festival burst is what is measured here, not the limit: make it large enough never to refuse.
    # The origins are followed: theirs is the partners' budget (6000 a minute by default).
    config["HALLES_RATE_LIMIT_INBOX"] = "100000000/1m"
    config["HALLES_RATE_LIMIT_INBOX_PARTNERS"] = "100000000/1m"
    return config


def _prepare(app, origins: list[Origin]) -> None:
    """The receiver knows the origins (their actors were fetched) and follows them (peering accepted):
    a node only imports events from servers it follows."""
    from node.extensions import db
    from node.fedi.keystore import store_actor
    from node.fedi.models import Follow

    with app.app_context():
        for origin in origins:
            actor = store_actor(origin.actor_document())
            db.session.add(Follow(actor_id=actor.id, direction="outgoing", state="accepted",
                                  activity_id=f"http://receiver.bench/follows/{actor.id}"))
        db.session.commit()


class WarmUp(NamedTuple):
    """What one benchmark process receives and applies while it warms up (``_warm_up``): activities
    about events no measured activity is about, the batches carrying them, and how many are Creates."""

    activities: list[tuple[Origin, dict[str, Any]]]
    posts: list[tuple[bytes, dict[str, str]]]
    creates: int

    @classmethod
    def make(cls, seed: int) -> WarmUp:
        activities = make_activities(WARM_UP_SIZE, ORIGIN_LIST, first=WARM_UP_FIRST * (1 + seed))
        return cls(activities, batched_posts(activities),
                   sum(1 for _origin, activity in activities if activity["type"] == "Create"))


def _warm_up(app, posts: list[tuple[bytes, dict[str, str]]] | None = None) -> None:
    """What a running node did before the burst came: its keys read (parsing the RSA key takes about
    40 ms, 0.01 ms per activity of a 4,000-activity run, that a process spends once in its life), a
    first request served, the activities of ``posts`` (a ``WarmUp``'s) received and applied (the modules the inbox
    and the worker import on first use, the statements they prepare: about 20 ms, once in a process's
    life), and what it built while starting set aside from the garbage collector, as node/wsgi.py and
    ``halles worker`` do (``node.ops.runtime``)."""
    from node.fedi.identity import load_identity
    from node.ops.runtime import settle

    with app.app_context():
        load_identity()
    app.test_client().get("/healthz")
    if posts:
        _post_all(app, posts)
        _apply_all(app)
    settle()


def _environ(body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """The WSGI environ of a POST to the inbox, as gunicorn hands it to the app (the request line and
    headers parsed, the body readable from ``wsgi.input``)."""
    environ = {
        "REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": "/inbox", "QUERY_STRING": "",
        "SERVER_NAME": "receiver.bench", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000", "HTTP_HOST": "receiver.bench",
        "CONTENT_LENGTH": str(len(body)), "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
    return environ


def _post_all(app, posts) -> None:
    """POST every activity to the inbox by calling the WSGI app as gunicorn does, with the environ of
    each request built beforehand (werkzeug's test client builds one from its arguments and wraps the
    response, about 0.1 ms per request that no server spends; gunicorn's own HTTP parsing is what is
    left out here)."""
    requests = [(_environ(body, headers), body) for body, headers in posts]
    answer: list[str] = []

    def start_response(status: str, _headers: list, _exc_info: Any = None) -> None:
        answer.append(status)

    for environ, body in requests:
        environ["wsgi.input"] = io.BytesIO(body)
        answer.clear()
        chunks = app(environ, start_response)
        try:
            text = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        if not answer[0].startswith("202"):
            raise RuntimeError(f"inbox answered {answer[0]}: {text[:300].decode(errors='replace')}")
        if text:  # a batch: every activity must have been stored
            refused = [line for line in json.loads(text)["results"] if line["status"] != 202]
            if refused:
                raise RuntimeError(f"the inbox refused {len(refused)} activities of a batch: {refused[:3]}")


def _apply_all(app) -> None:
    from node.fedi.worker import process_inbox

    with app.app_context():
        while process_inbox():
            pass


def _states(app, warm_ups: Sequence[WarmUp] = ()) -> dict[str, int]:
    """The inbox items by state and the events, less those of the processes' ``warm_ups``."""
    from sqlalchemy import func, select

    from node.events.models import Event
    from node.extensions import db
    from node.fedi.models import InboxItem

    with app.app_context():
        states = dict(db.session.execute(select(InboxItem.state, func.count()).group_by(InboxItem.state)).all())
        states["events"] = db.session.scalar(select(func.count(Event.id)))
    for warm_up in warm_ups:
        states["applied"] -= len(warm_up.activities)
        states["events"] -= warm_up.creates
    return states


def _relax_postgres(url: str) -> None:
    """``synchronous_commit=off`` for every new session of this benchmark database."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    engine.dispose()


def single(backend: str, rounds: list[tuple[list, list]], count: int, *, durable: bool,
           warm_up: WarmUp | None = None) -> dict[str, Any]:
    """One process, round after round (``rounds``: the activities of each, and the posts carrying
    them; ``count`` activities in all): the ceiling of the round's activities is measured, then its
    posts are posted one after the other and applied. The ceiling is the sum of the rounds' own: on a
    machine whose speed drifts from one second to the next, each round is set against work done under
    the same conditions, a few hundred milliseconds apart."""
    base = None if durable or backend != "sqlite" else "/dev/shm"
    with common.workdir(f"ingest-{backend}", base=base) as folder, common.database(backend, folder) as url:
        if backend == "postgres" and not durable:
            _relax_postgres(url)
        app = common.make_node(_config(folder, url))
        try:
            _prepare(app, ORIGIN_LIST)
            _warm_up(app, warm_up.posts if warm_up is not None else None)
            server_before = _server_cpu_now(backend, url)
            ceiling = posting = applying = cpu = 0.0
            for activities, posts in rounds:
                ceiling += len(activities) / ceiling_rate(activities, ORIGIN_LIST, repeat=2)
                cpu_before, started = common.process_cpu(), time.perf_counter()
                _post_all(app, posts)
                posted = time.perf_counter()
                _apply_all(app)
                done = time.perf_counter()
                cpu += common.process_cpu() - cpu_before
                posting, applying = posting + posted - started, applying + done - posted
            server = _server_cpu(backend, url, server_before)
            states = _states(app, [warm_up] if warm_up is not None else [])
        finally:
            common.dispose(app)
    outcome = _outcome(count, posting, posting + applying, states, cpu, server)
    outcome["ceiling_rate"] = count / ceiling
    return outcome


def _server_cpu_now(backend: str, url: str) -> float | None:
    from sqlalchemy.engine import make_url

    return common.database_server_cpu(make_url(url).database) if backend == "postgres" else None


def _server_cpu(backend: str, url: str, before: float | None) -> float | None:
    after = _server_cpu_now(backend, url)
    return after - before if before is not None and after is not None else None


def _outcome(count: int, posting: float, total: float, states: dict[str, int], cpu: float,
             server_cpu: float | None) -> dict[str, Any]:
    """What a run measured: ``posting`` seconds until every activity was stored, ``total`` until every
    one was applied, ``cpu`` seconds of the node's processes and ``server_cpu`` of the database's."""
    return {
        "activities_per_second": count / total,
        "inbox_per_second": count / posting,
        "seconds": round(total, 3),
        "states": states,
        # Where the cores went: the node's processes, and the PostgreSQL server on the same machine
        # (its own processes: not in the node's count).
        "cpu_ms_per_activity": {"node": round(cpu * 1000 / count, 3),
                                "database_server": None if server_cpu is None else round(server_cpu * 1000 / count, 3)},
    }


# --- both cores ----------------------------------------------------------------------------------


def _ready_node(config: dict[str, Any], partition: tuple[int, int] | None = None, warm_up_posts=None):
    """A node app as a running process has it (``_warm_up``)."""
    app = common.make_node(config, migrate=False)
    app.config["HALLES_WORKER_PARTITION"] = partition
    _warm_up(app, warm_up_posts)
    return app


def _poster(config: dict[str, Any], posts, warm_up_posts, start, finished, measured) -> None:
    app = _ready_node(config, warm_up_posts=warm_up_posts)
    start.wait()
    cpu = common.process_cpu()
    _post_all(app, posts)
    # The moment it is done, before tearing down (a process's exit is no part of the path). Monotonic
    # time is one clock for every process of the machine. With the CPU time the work took.
    finished.put((time.monotonic(), common.process_cpu() - cpu))
    measured.wait(timeout=60)  # its database connections (server processes) counted first
    common.dispose(app)


def _applier(config: dict[str, Any], partition: tuple[int, int] | None, warm_up_posts, start, posting_done,
             finished, measured) -> None:
    """``halles worker``'s inbox loop: apply what is pending, wait a moment when nothing is, stop once the
    posters are done and nothing is left."""
    from node.fedi.worker import process_inbox

    app = _ready_node(config, partition, warm_up_posts)
    start.wait()
    cpu = common.process_cpu()
    with app.app_context():
        while True:
            if process_inbox():
                continue
            if posting_done.is_set() and not process_inbox():
                break
            time.sleep(0.002)
    finished.put((time.monotonic(), common.process_cpu() - cpu))
    measured.wait(timeout=60)  # its database connections (server processes) counted first
    common.dispose(app)


def dual(backend: str, posts, count: int, warm_ups: list[WarmUp] | None = None) -> dict[str, Any]:
    """Two web processes post half of the batches each while the worker applies (``WORKER_PROCESSES``
    on PostgreSQL, one on SQLite), all at once, until everything is applied. Timed from the moment every process
    is ready to the moment the last one is done, as each reports it (process start and exit are left
    out: they cost a few hundred milliseconds, as much as the work on a small run)."""
    base = None if backend != "sqlite" else "/dev/shm"
    context = multiprocessing.get_context("spawn")
    with common.workdir(f"ingest-dual-{backend}", base=base) as folder, common.database(backend, folder) as url:
        if backend == "postgres":
            _relax_postgres(url)
        config = _config(folder, url)
        app = common.make_node(config)
        _prepare(app, ORIGIN_LIST)
        common.dispose(app)
        appliers = WORKER_PROCESSES if backend == "postgres" else 1  # SQLite has a single writer
        start = context.Barrier(2 + appliers + 1)
        posting_done, measured = context.Event(), context.Event()
        posted_at, applied_at = context.Queue(), context.Queue()
        # Each process warms up on activities of its own (the posters' first, then the appliers').
        warm_ups = (warm_ups or [])[:2 + appliers]
        warm = [warm_up.posts for warm_up in warm_ups] + [None] * (2 + appliers - len(warm_ups))
        posters = [context.Process(target=_poster, args=(config, posts[index::2], warm[index], start, posted_at,
                                                         measured))
                   for index in range(2)]
        workers = [context.Process(target=_applier, args=(config, (index, appliers) if appliers > 1 else None,
                                                          warm[2 + index], start, posting_done, applied_at, measured))
                   for index in range(appliers)]
        for child in posters + workers:
            child.start()
        try:
            start.wait(timeout=120)
            started = time.monotonic()
            server_before = _server_cpu_now(backend, url)
            posted_reports = [posted_at.get(timeout=600) for _ in posters]
            posting_done.set()
            applied_reports = [applied_at.get(timeout=600) for _ in workers]
            server = _server_cpu(backend, url, server_before)
            measured.set()
            posted = max(at for at, _cpu in posted_reports)
            done = max(at for at, _cpu in applied_reports)
            cpu = sum(used for _at, used in posted_reports + applied_reports)
            for child in posters + workers:
                child.join(timeout=60)
        finally:
            for child in posters + workers:
                if child.is_alive():
                    child.kill()
        if any(child.exitcode != 0 for child in posters + workers):
            raise RuntimeError("a benchmark process failed (its traceback is above)")
        app = common.make_node(config, migrate=False)
        states = _states(app, warm_ups)
        common.dispose(app)
    outcome = _outcome(count, posted - started, done - started, states, cpu, server)
    # The node's CPU by role: the web processes' (posting) and the worker's (applying).
    outcome["cpu_ms_per_activity"]["posting"] = round(sum(used for _at, used in posted_reports) * 1000 / count, 3)
    outcome["cpu_ms_per_activity"]["applying"] = round(sum(used for _at, used in applied_reports) * 1000 / count, 3)
    outcome["worker_processes"] = appliers
    # Of the two cores, the share that worked (the node's processes and the database server).
    outcome["cores_busy"] = round((cpu + (server or 0.0)) / (done - started), 2)
    return outcome


# --- where the time goes -------------------------------------------------------------------------


def breakdown(activities, origins: list[Origin], *, sample: int = 100) -> dict[str, float]:
    """Milliseconds per activity of each step of the inbox, each timed alone with the node's own
    functions (best of 5 passes over ``sample`` activities) on SQLite in memory-backed storage, next
    to the whole POST (one activity per POST, and in batches) and the worker's apply."""
    from federation.httpsig import verify_request
    from node.common import ratelimit
    from node.fedi import inbox, inbox_store
    from node.fedi.keystore import domain_of, resolve_key
    from node.fedi.outbox import now_aware

    def best(step, items) -> float:
        fastest = float("inf")
        for _ in range(5):
            timer = common.Timer()
            for item in items:
                step(item)
            fastest = min(fastest, timer.elapsed / len(items))
        return round(fastest * 1000, 3)

    posts = one_per_post(activities[:sample * 4])
    sample_posts = posts[:sample]
    documents = [json.loads(body) for body, _headers in sample_posts]
    steps: dict[str, float] = {"ceiling_work": round(1000 / ceiling_rate(activities[:sample], origins), 3)}
    with common.workdir("ingest-breakdown", base="/dev/shm") as folder, common.database("sqlite", folder) as url:
        app = common.make_node(_config(folder, url))
        try:
            _prepare(app, origins)
            _warm_up(app)
            with app.test_request_context("/inbox", method="POST"):
                steps["parse_body"] = best(lambda post: inbox.parse_body("application/activity+json", post[0]),
                                           sample_posts)
                steps["rate_limit_bucket"] = best(lambda _post: ratelimit.enforce("inbox", "bench.example"),
                                                  sample_posts)
                steps["domain_blocks"] = best(
                    lambda doc: inbox.blocked_among({domain_of(doc["actor"]), "key.example"}), documents)
                steps["http_signature"] = best(lambda post: verify_request(
                    "POST", INBOX_URL, post[1], post[0], resolve_key, now=now_aware()), sample_posts)
                steps["proofs"] = best(lambda doc: inbox.authenticate(doc, doc["actor"]), documents)
                counter = iter(range(10**9))
                steps["store"] = best(lambda doc: inbox_store.store({**doc, "id": f"{doc['id']}#{next(counter)}"},
                                                                    doc["actor"]), documents)
            _apply_all(app)  # what the store step queued, off the clock
            whole = []
            for first in range(sample, min(len(posts), sample * 4), sample):
                timer = common.Timer()
                _post_all(app, posts[first:first + sample])
                whole.append(timer.elapsed / sample)
            steps["whole_post"] = round(min(whole) * 1000, 3)
            _apply_all(app)
            # New activities (later versions of the same events), in batches.
            fresh = make_activities(sample * 2, origins)
            timer = common.Timer()
            _post_all(app, batched_posts(fresh))
            steps["whole_post_in_batches"] = round(timer.elapsed / len(fresh) * 1000, 3)
            # The POST with inbox.receive answering at once: Flask (request, response, hooks), the
            # view (rate-limit lease, reading the body) and this driver.
            real_receive = inbox.receive
            inbox.receive = lambda *_args, **_kwargs: inbox_store.Received(None, False)
            try:
                timer = common.Timer()
                _post_all(app, posts[:sample])
                steps["flask_and_view"] = round(timer.elapsed / sample * 1000, 3)
            finally:
                inbox.receive = real_receive
            # What the steps timed alone leave of the POST: mostly the same steps running slower in the
            # real sequence (caches cold after the other steps) than in a loop of their own.
            inbox_steps = ("parse_body", "domain_blocks", "http_signature", "proofs", "store", "flask_and_view")
            steps["rest_of_post"] = round(steps["whole_post"] - sum(steps[name] for name in inbox_steps), 3)
            count = _pending_count(app)
            timer = common.Timer()
            _apply_all(app)
            steps["worker_apply"] = round(timer.elapsed / max(1, count) * 1000, 3)
        finally:
            common.dispose(app)
    return steps


def _pending_count(app) -> int:
    from sqlalchemy import func, select

    from node.extensions import db
    from node.fedi.models import InboxItem

    with app.app_context():
        return db.session.scalar(select(func.count(InboxItem.id)).where(InboxItem.state == "pending"))


# --- the benchmark -------------------------------------------------------------------------------


def _label(backend: str, mode: str) -> str:
    if mode == "dual":
        return f"dual/{backend}/batched"
    if mode == "one-per-post":
        return f"single/{backend}/one-per-post"
    return f"single/{backend}/batched" + ("/durable" if mode == "durable" else "")


def _measure(backend: str, mode: str, count: int, activities, batches, batched_rounds, single_rounds,
             warm_ups: list[WarmUp]) -> dict[str, Any]:
    """One run of ``mode`` on ``backend``, with its ceiling and ratio."""
    if mode == "dual":
        # Both cores are busy during the run: its ceiling is measured right before and right after it,
        # and the two averaged (the machine's speed drifts; a ratio means something only against work
        # done under the same conditions).
        before = ceiling_rate(activities, ORIGIN_LIST)
        outcome = dual(backend, batches, count, warm_ups)
        outcome["ceiling_rate"] = (before + ceiling_rate(activities, ORIGIN_LIST)) / 2
    elif mode == "one-per-post":
        outcome = single(backend, single_rounds, count, durable=False, warm_up=warm_ups[0])
    else:
        outcome = single(backend, batched_rounds, count, durable=mode == "durable", warm_up=warm_ups[0])
    applied = outcome["states"].get("applied", 0)
    if applied != count:
        raise RuntimeError(f"only {applied} of {count} activities were applied: {outcome['states']}")
    ceiling = outcome.pop("ceiling_rate")
    outcome["ceiling"] = round(ceiling, 1)
    outcome["ratio"] = round(outcome["activities_per_second"] / ceiling, 3)
    for key in ("activities_per_second", "inbox_per_second"):
        outcome[key] = round(outcome[key], 1)
    # Milliseconds per activity: where the time goes, next to the ceiling's share.
    outcome["ms_per_activity"] = {"whole_path": round(1000 / outcome["activities_per_second"], 3),
                                  "until_stored": round(1000 / outcome["inbox_per_second"], 3),
                                  "ceiling_work": round(1000 / ceiling, 3)}
    return outcome


def _median_run(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median ratio (the lower middle one of an even count), with every run's ratio in
    ``repeats`` when there were several."""
    ranked = sorted(outcomes, key=lambda outcome: outcome["ratio"])
    chosen = dict(ranked[(len(ranked) - 1) // 2])
    if len(outcomes) > 1:
        chosen["repeats"] = [outcome["ratio"] for outcome in outcomes]
    return chosen


def _say(label: str, outcome: dict[str, Any], attempt: int | None = None) -> None:
    run = f" (run {attempt})" if attempt is not None else ""
    common.say(f"  {label}{run}: {outcome['activities_per_second']:.0f}/s (inbox {outcome['inbox_per_second']:.0f}/s), "
               f"ceiling {outcome['ceiling']:.0f}/s, ratio {outcome['ratio']:.3f}")


def run(*, quick: bool = False, results_dir: Path | None = None, count: int | None = None,
        backends: list[str] | None = None) -> dict[str, Any]:
    count = count or (200 if quick else 4000)
    backends = backends or common.available_backends()
    if not ORIGIN_LIST:
        ORIGIN_LIST.extend(Origin.make(index) for index in range(ORIGINS))
    origins = ORIGIN_LIST
    common.say(f"ingest: signing {count} activities from {ORIGINS} origins")
    activities = make_activities(count, origins)
    batches = batched_posts(activities)
    singles = one_per_post(activities)
    size = sum(len(body) for body, _ in singles) / len(singles)
    # Single runs go round by round, each round's ceiling measured right before it (``single``).
    in_rounds = [activities[first:first + ROUND_SIZE] for first in range(0, count, ROUND_SIZE)]
    batched_rounds = [(part, batched_posts(part)) for part in in_rounds]
    single_rounds = [(part, one_per_post(part)) for part in in_rounds]
    warm_ups = [WarmUp.make(seed) for seed in range(2 + WORKER_PROCESSES)]
    runs: dict[str, dict[str, Any]] = {}
    modes = ("batched", "one-per-post", "dual") if quick else ("batched", "durable", "one-per-post", "dual")
    target_runs = 1 if quick else TARGET_RUNS
    for backend in backends:
        # The target's modes again after the others, so that their runs are spread over the backend's
        # minute or so rather than back to back.
        attempts: dict[str, list[dict[str, Any]]] = {}
        for mode in (*modes, *(("batched", "dual") * (target_runs - 1))):
            label = _label(backend, mode)
            outcome = _measure(backend, mode, count, activities, batches, batched_rounds, single_rounds, warm_ups)
            attempts.setdefault(label, []).append(outcome)
            _say(label, outcome, len(attempts[label]) if target_runs > 1 and mode in ("batched", "dual") else None)
        for label, outcomes in attempts.items():
            runs[label] = _median_run(outcomes)
    headline_backend = backends[0]
    headline = runs[f"single/{headline_backend}/batched"]
    # The target, per backend: the batched path on one core, and with both cores.
    verdicts = {backend: {"single": runs[f"single/{backend}/batched"]["ratio"],
                          "dual": runs[f"dual/{backend}/batched"]["ratio"]} for backend in backends}
    met = all(ratios["single"] >= TARGET_SINGLE and ratios["dual"] > TARGET_DUAL for ratios in verdicts.values())
    result = common.write_result(
        NAME,
        value=headline["activities_per_second"],
        unit="activities/s",
        ceiling=headline["ceiling"],
        target=(f">= {TARGET_SINGLE} of the single-core ceiling on one core, > {TARGET_DUAL} with both cores "
                "(activities arriving in batches, as Halles nodes send them), on every backend"),
        met=met,
        results_dir=results_dir,
        headline=f"single/{headline_backend}/batched",
        activities=count,
        origins=ORIGINS,
        batch_size=BATCH_SIZE,
        mean_activity_bytes=round(size),
        ratios_by_backend=verdicts,
        runs=runs,
        ms_per_step=breakdown(activities, origins, sample=min(100, max(4, count // 4))),
        fsync=common.fsync_latency(),
    )
    summary = ", ".join(f"{backend} {ratios['single']:.2f} on one core, {ratios['dual']:.2f} on two"
                        for backend, ratios in verdicts.items())
    if target_runs > 1:
        summary += f"; medians of {target_runs} runs"
    common.say(f"ingest: {result['value']:.0f} activities/s, ceiling {result['ceiling']:.0f}/s ({summary})")
    return result


if __name__ == "__main__":
    import sys

    run(quick="--quick" in sys.argv)
