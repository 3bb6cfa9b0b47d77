"""Rate limits: token buckets kept in the database, so every gunicorn worker (and every machine that
shares the database) spends from the same budget, and a restart does not hand out a fresh one.

A limit written ``N/period`` (``HALLES_RATE_LIMIT_*``, e.g. ``10/1m``) is a bucket that holds at most
N tokens and refills at N per period: a client may make N requests at once, then one every
period / N. Over any stretch of time T a client gets at most ``N + T * N / period`` requests through
(the property the tests check). ``0`` or ``off`` turns a limit off.

One row per (limit, client) in ``rate_limit_buckets``; taking a token is one ``INSERT ... ON CONFLICT
DO UPDATE ... WHERE there is a token RETURNING`` statement on its own connection, committed at once:
atomic on PostgreSQL (row lock) and SQLite (one writer), and independent of the request's own
transaction, so a refused or failed request still counts. That commit does not wait for the disk
(``synchronous_commit`` off for it on PostgreSQL, ``synchronous=NORMAL`` on SQLite): a take lost in a
crash only hands a client back a token.

Where the buckets are (``bucket_engine``): in the node's database on PostgreSQL; on SQLite in a small
database file of their own next to it (``halles.db`` -> ``halles.ratelimits.db``, created on first
use). SQLite has one writer per file: in the main file every take (a sign-in attempt, a received
batch) queued behind the worker's and the other requests' writes, and SQLite's busy wait sleeps 1,
2, 5, 10... ms at a time -- with the web and the worker sharing two cores, received batches were
stored 15 % slower for it (ingest benchmark). The main file keeps an empty ``rate_limit_buckets``
table (the schema is the same on both databases); nothing in it needs a backup.

Large budgets (``LEASE_MIN_BUDGET`` tokens or more, such as the inbox's 300 a minute) are spent by
``enforce`` from a lease: the process takes up to 1/``LEASE_FRACTION`` of the budget at once from
the database and spends it from memory for at most ``LEASE_SECONDS``, so a burst of requests does
not write the database for each. Tokens a lease did not spend are lost, never handed out twice; the
bound above then holds within one lease per process (a client can get at most that many more
through while the database bucket refills to full under an unspent lease). ``take`` itself is exact.

Limits in use (see ``LIMITS``): the inbox per remote server (a larger one for partners), event
registrations per client address, sign-in attempts per client address (failed logins and password-reset
requests)."""

from __future__ import annotations

import hashlib
import ipaddress
import math
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any

from flask import current_app, request
from sqlalchemy import Float, String, bindparam, create_engine, delete, event, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.schema import CreateIndex, CreateTable

from node.common.errors import HallesError, PayloadTooLarge
from node.common.pgconnection import pooled_connection
from node.common.sqlite_setup import use_wal
from node.extensions import db

#: limit name -> (config key, environment variable, default).
LIMITS: dict[str, tuple[str, str, str]] = {
    # A peer announcing a festival sends a few hundred activities; catch-up is pulled, not pushed.
    "inbox": ("HALLES_RATE_LIMIT_INBOX", "HALLES_RATE_LIMIT_INBOX", "300/1m"),
    # The servers this node follows or peers with (node.fedi.peering.PartnerDomains): a partner's
    # festival programme, a thousand events and their updates, arrives in seconds, not minutes.
    "inbox_partners": ("HALLES_RATE_LIMIT_INBOX_PARTNERS", "HALLES_RATE_LIMIT_INBOX_PARTNERS", "6000/1m"),
    # Citizens register without an account; a family or a class behind one address registers a few.
    "registrations": ("HALLES_RATE_LIMIT_REGISTRATIONS", "HALLES_RATE_LIMIT_REGISTRATIONS", "30/10m"),
    # Failed sign-ins (successful ones are free: 25 organisations share one office address).
    "login": ("HALLES_RATE_LIMIT_LOGIN", "HALLES_RATE_LIMIT_LOGIN", "10/5m"),
}
KEY_LENGTH = 255
#: One take in this many also deletes the buckets of that limit that have refilled completely.
PRUNE_EVERY = 200
#: Budgets at least this large are spent from leases by ``enforce`` (see the module's doc).
LEASE_MIN_BUDGET = 64
#: A lease holds at most this fraction of the budget...
LEASE_FRACTION = 32
#: ... and at most this many tokens ...
LEASE_MAX_TOKENS = 64
#: ... for at most this long.
LEASE_SECONDS = 1.0
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([smhd]?)\s*$")


class TooManyRequests(HallesError):
    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        #: Sent as HTTP headers by the problem handler.
        self.headers = {"Retry-After": str(retry_after)}


class RateLimitBucket(db.Model):
    __tablename__ = "rate_limit_buckets"

    #: "<limit>:<client>", e.g. "inbox:lyon.example" or "login:203.0.113.7".
    key: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    #: Tokens left at ``updated`` (fractional: the bucket refills continuously).
    tokens: Mapped[float] = mapped_column(Float)
    #: Unix time in seconds; a plain number keeps the refill arithmetic in portable SQL.
    updated: Mapped[float] = mapped_column(Float, index=True)


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.seconds

    def __str__(self) -> str:
        return f"{self.count} per {_duration(self.seconds)}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: Whole tokens left after this request.
    remaining: int
    #: Seconds until a refused client may try again (0 when allowed).
    retry_after: int


def parse_rate(text: str | None) -> Rate | None:
    """``"10/5m"`` -> Rate(10, 300); ``"0"``, ``"off"`` or empty -> None (no limit). ValueError with a
    message an operator can act on for anything else."""
    raw = (text or "").strip().lower()
    if raw in ("", "0", "off", "none", "false"):
        return None
    match = _RATE.match(raw)
    if not match:
        raise ValueError(f"{text!r} is not a rate: write COUNT/PERIOD such as 10/1m, 300/1h or 5/30s, or off")
    count = int(match.group(1))
    amount = float(match.group(2)) if match.group(2) else 1.0
    seconds = amount * _UNITS[match.group(3)]
    if count == 0:
        return None
    if seconds <= 0:
        raise ValueError(f"{text!r} has a zero period: write COUNT/PERIOD such as 10/1m")
    return Rate(count, seconds)


def _duration(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            amount = int(seconds // size)
            return unit if amount == 1 else f"{amount} {unit}s"
    return f"{seconds:g} seconds"


def configured_rate(name: str) -> Rate | None:
    config_key, _env, default = LIMITS[name]
    return parse_rate(str(current_app.config.get(config_key, default)))


# --- storage ---------------------------------------------------------------------------------------

_TABLE = RateLimitBucket.__table__


_SIDE_LOCK = threading.Lock()


def bucket_engine() -> Any:
    """The engine whose database holds the buckets (see the module's doc)."""
    engine = db.engine
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:" or path.startswith("file:"):
        return engine
    found = current_app.extensions.get("halles_rate_engine")
    if found is not None and found[0] == path:
        return found[1]
    main = Path(path)
    # Pooled like the main engine's connections (opening one and setting it up cost 0.1 ms, a take
    # 0.04); they are closed with the engine, which lives as long as the app.
    side = create_engine(f"sqlite:///{main.with_name(f'{main.stem}.ratelimits{main.suffix}')}")
    event.listen(side, "connect", _configure_side_connection)
    with side.begin() as connection:  # IF NOT EXISTS: threads and processes may start at once
        connection.execute(CreateTable(_TABLE, if_not_exists=True))
        for index in _TABLE.indexes:
            connection.execute(CreateIndex(index, if_not_exists=True))
    with _SIDE_LOCK:
        found = current_app.extensions.get("halles_rate_engine")
        if found is not None and found[0] == path:  # another thread made it meanwhile: keep that one
            side.dispose()
            return found[1]
        if found is not None:  # the app's database changed (tests): the old file's engine goes
            found[1].dispose()
        current_app.extensions["halles_rate_engine"] = (path, side)
        return side


def _configure_side_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=15000")
    use_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")  # see the module's doc
    cursor.close()


def _bucket_key(name: str, client: str) -> str:
    key = f"{name}:{client}"
    if len(key) > KEY_LENGTH:
        key = f"{name}:sha256:{hashlib.sha256(client.encode()).hexdigest()}"
    return key


_REFILLED = ("rate_limit_buckets.tokens + (CASE WHEN rate_limit_buckets.updated < :now "
             "THEN :now - rate_limit_buckets.updated ELSE 0.0 END) * :per_second")
_AVAILABLE = f"(CASE WHEN {_REFILLED} > :capacity THEN :capacity ELSE {_REFILLED} END)"
#: Written once as SQL text (the same on SQLite and PostgreSQL): building the expression with
#: ``case()`` and literals for every request cost more than the statement itself.
_TAKE = text(
    "INSERT INTO rate_limit_buckets (key, tokens, updated) VALUES (:key, :capacity - :spend, :now) "
    "ON CONFLICT (key) DO UPDATE SET "
    f"tokens = {_AVAILABLE} - :spend, "
    "updated = CASE WHEN rate_limit_buckets.updated < :now THEN :now ELSE rate_limit_buckets.updated END "
    f"WHERE {_AVAILABLE} >= :spend "
    "RETURNING tokens"
).bindparams(bindparam("capacity", type_=Float()), bindparam("now", type_=Float()),
             bindparam("per_second", type_=Float()), bindparam("spend", type_=Float()))


def take(name: str, client: str, rate: Rate, *, now: float | None = None, tokens: int = 1) -> Decision:
    """Spend ``tokens`` of ``client``'s bucket for limit ``name`` (all or none); committed at once,
    on its own."""
    now = time.time() if now is None else now
    key = _bucket_key(name, client)
    capacity = float(rate.count)
    engine = bucket_engine()
    params = {"key": key, "capacity": capacity, "now": now, "per_second": rate.per_second, "spend": float(tokens)}
    if engine.dialect.name == "postgresql" and random.random() >= 1 / PRUNE_EVERY:
        left = _take_in_one_statement(engine, params)
        if left is not None:
            return Decision(True, int(math.floor(left + 1e-9)), 0)
        with engine.connect() as connection:  # refused: when is there a token again?
            row = connection.execute(select(_TABLE.c.tokens, _TABLE.c.updated).where(_TABLE.c.key == key)).one()
            connection.rollback()
        return _refused(row, capacity, now, rate, tokens)
    if engine is not db.engine and engine.dialect.name == "sqlite" and random.random() >= 1 / PRUNE_EVERY:
        left, row = _take_on_side_file(engine, params)
        if left is not None:
            return Decision(True, int(math.floor(left + 1e-9)), 0)
        return _refused(row, capacity, now, rate, tokens)
    # The side database's connections are set up so (``_configure_side_connection``).
    toggle = engine.dialect.name == "sqlite" and engine is db.engine
    with engine.connect() as connection:
        if toggle:
            # WAL keeps the commit atomic; only its flush to disk is skipped (see the module's doc).
            synchronous = connection.exec_driver_sql("PRAGMA synchronous").scalar()
            connection.exec_driver_sql("PRAGMA synchronous=NORMAL")
        elif engine.dialect.name != "sqlite":
            connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
        try:
            left = connection.execute(_TAKE, params).scalar()
            if left is None:
                row = connection.execute(select(_TABLE.c.tokens, _TABLE.c.updated).where(_TABLE.c.key == key)).one()
            if random.random() < 1 / PRUNE_EVERY:  # spreads the housekeeping over requests
                _prune(connection, name, rate, now)
            connection.commit()
        finally:
            connection.rollback()  # after a failure; nothing to undo after the commit
            if toggle:
                connection.exec_driver_sql(f"PRAGMA synchronous={int(synchronous)}")
                connection.commit()
    if left is not None:
        return Decision(True, int(math.floor(left + 1e-9)), 0)
    return _refused(row, capacity, now, rate, tokens)


def _refused(row: Any, capacity: float, now: float, rate: Rate, tokens: int) -> Decision:
    """The refusal of a take of ``tokens`` from the bucket ``row`` (tokens, updated): when there are
    enough again."""
    tokens_left, updated = row
    have = min(capacity, tokens_left + max(0.0, now - updated) * rate.per_second)
    return Decision(False, 0, max(1, math.ceil((tokens - have) / rate.per_second)))


def _as_sqlalchemy_error(engine: Any, sql: str, params: Any, exc: Exception) -> DBAPIError:
    """A driver's error, from a take made through the driver's own connection, as SQLAlchemy raises it
    (what the callers of ``take`` catch: a database that is down or full)."""
    return DBAPIError.instance(sql, params, exc, engine.dialect.loaded_dbapi.Error, dialect=engine.dialect)


#: ``_TAKE`` in sqlite3's placeholders, and the parameters' names in their order.
_TAKE_QMARK = re.sub(r":(\w+)", "?", str(_TAKE))
_TAKE_NAMES = tuple(re.findall(r":(\w+)", str(_TAKE)))


def _take_on_side_file(engine: Any, params: dict[str, Any]) -> tuple[float | None, tuple[float, float] | None]:
    """SQLite's side file: the take through the driver's own connection, without SQLAlchemy's
    statement machinery. A received batch's take cost 0.5-0.6 ms in the middle of the request's other
    work (its code out of the processor's caches) against 0.17 this way (0.12 and 0.02 when repeated
    in a loop). The tokens left and None, or None and the bucket's (tokens, updated) when refused."""
    pooled = engine.raw_connection()
    try:
        cursor = pooled.cursor()
        try:
            cursor.execute(_TAKE_QMARK, [params[name] for name in _TAKE_NAMES])
            taken = cursor.fetchone()
            row = None
            if taken is None:
                cursor.execute("SELECT tokens, updated FROM rate_limit_buckets WHERE key = ?", (params["key"],))
                row = tuple(cursor.fetchone())
            pooled.commit()
        finally:
            cursor.close()
    except engine.dialect.loaded_dbapi.Error as exc:
        pooled.rollback()
        raise _as_sqlalchemy_error(engine, _TAKE_QMARK, params, exc) from exc
    finally:
        pooled.close()
    return (taken[0], None) if taken is not None else (None, row)


#: ``_TAKE`` for PostgreSQL as one statement that is its own transaction and commits without waiting for
#: the disk: ``set_config(..., true)`` sets ``synchronous_commit`` for the statement's own (implicit)
#: transaction, whose commit reads it. The same bucket arithmetic, from a SELECT rather than VALUES.
_TAKE_ALONE = text(
    str(_TAKE).replace("VALUES (:key, :capacity - :spend, :now)",
                       "SELECT :key, :capacity - :spend, :now FROM set_config('synchronous_commit', 'off', true)")
).bindparams(bindparam("capacity", type_=Float()), bindparam("now", type_=Float()),
             bindparam("per_second", type_=Float()), bindparam("spend", type_=Float()))


def _take_in_one_statement(engine: Any, params: dict[str, Any]) -> float | None:
    """PostgreSQL: the take as one statement on a pooled connection in autocommit (``_TAKE_ALONE``): one
    round trip, 110-130 us of the process's CPU and 240-290 us of wall time, the pool's checkout
    included. Before, ``SET LOCAL``, the insert and ``COMMIT`` went in one psycopg pipeline: one round
    trip too, but 250 us of CPU and 420 of wall time (psycopg's pipeline machinery). The tokens left,
    or None when refused."""
    sql = _TAKE_PYFORMAT.get(engine.dialect.name)
    if sql is None:
        sql = _TAKE_PYFORMAT[engine.dialect.name] = str(_TAKE_ALONE.compile(dialect=engine.dialect))
    try:
        with pooled_connection(engine, autocommit=True) as pooled:
            row = pooled.driver_connection.execute(sql, params).fetchone()
    except engine.dialect.loaded_dbapi.Error as exc:
        raise _as_sqlalchemy_error(engine, sql, params, exc) from exc
    return row[0] if row else None


#: ``_TAKE_ALONE`` as the driver takes it, per dialect (``_take_in_one_statement``).
_TAKE_PYFORMAT: dict[str, str] = {}


def peek(name: str, client: str, rate: Rate, *, now: float | None = None) -> Decision:
    """Would ``take`` succeed now? Reads only (for limits that charge failed attempts afterwards)."""
    now = time.time() if now is None else now
    table = RateLimitBucket.__table__
    with bucket_engine().connect() as connection:
        row = connection.execute(
            select(table.c.tokens, table.c.updated).where(table.c.key == _bucket_key(name, client))
        ).one_or_none()
    if row is None:
        return Decision(True, rate.count, 0)
    have = min(float(rate.count), row.tokens + max(0.0, now - row.updated) * rate.per_second)
    if have >= 1:
        return Decision(True, int(math.floor(have + 1e-9)), 0)
    return Decision(False, 0, max(1, math.ceil((1 - have) / rate.per_second)))


def _prune(connection: Any, name: str, rate: Rate, now: float) -> int:
    """Delete buckets of limit ``name`` that have refilled completely: they hold no information."""
    table = RateLimitBucket.__table__
    result = connection.execute(
        delete(table).where(table.c.key.like(f"{name}:%"), table.c.updated < now - rate.seconds)
    )
    return result.rowcount or 0


def prune(name: str, *, now: float | None = None) -> int:
    """Housekeeping for limit ``name`` (also done now and then by ``take``)."""
    rate = configured_rate(name)
    if rate is None:
        return 0
    with bucket_engine().begin() as connection:
        return _prune(connection, name, rate, time.time() if now is None else now)


# --- in requests -----------------------------------------------------------------------------------


def client_address() -> str:
    """The client's address as the app sees it (ProxyFix applies ``HALLES_BEHIND_PROXY``). IPv6
    clients are counted per /64: one household or host gets a whole /64 and can change the rest."""
    raw = request.remote_addr or "unknown"
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return raw
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _refusal(name: str, client: str, rate: Rate, decision: Decision, what: str) -> TooManyRequests:
    return TooManyRequests(
        f"too many {what} from {client}: this node accepts {rate} (limit {name}); "
        f"try again in {decision.retry_after} s",
        decision.retry_after,
    )


WHAT = {"inbox": "activities", "inbox_partners": "activities", "registrations": "registrations",
        "login": "sign-in attempts"}


class _Lease:
    __slots__ = ("tokens", "until")

    def __init__(self, tokens: int, until: float) -> None:
        self.tokens = tokens
        self.until = until


class _Leases:
    """This process's leases of one app (tests run several nodes in one process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_key: dict[str, _Lease] = {}

    def spend(self, key: str, now: float) -> int | None:
        """Tokens left in the lease after spending one, or None when there is no usable lease."""
        with self.lock:
            lease = self.by_key.get(key)
            if lease is None or lease.tokens < 1 or not (lease.until - LEASE_SECONDS <= now < lease.until):
                return None
            lease.tokens -= 1
            return lease.tokens

    def keep(self, key: str, tokens: int, now: float) -> None:
        with self.lock:
            if len(self.by_key) > 10_000:  # clients seen once: drop the expired leases
                self.by_key = {k: lease for k, lease in self.by_key.items() if lease.until > now}
            self.by_key[key] = _Lease(tokens, now + LEASE_SECONDS)


def _leases() -> _Leases:
    leases = current_app.extensions.get("halles_rate_leases")
    if leases is None:
        leases = current_app.extensions.setdefault("halles_rate_leases", _Leases())
    return leases


def lease_size(rate: Rate) -> int:
    """Tokens ``enforce`` takes from the database at once for ``rate`` (1: no lease)."""
    if rate.count < LEASE_MIN_BUDGET:
        return 1
    return max(1, min(LEASE_MAX_TOKENS, rate.count // LEASE_FRACTION))


def enforce(name: str, client: str, *, cost: int = 1) -> Decision | None:
    """Spend ``cost`` tokens (all or none) or raise TooManyRequests (429 with Retry-After). None when
    the limit is off."""
    rate = configured_rate(name)
    if rate is None or cost <= 0:
        return None
    if cost > 1:
        if cost > rate.count:
            # Never allowed, however long the client waits: say so rather than name a wait.
            raise PayloadTooLarge(f"more {WHAT.get(name, 'requests')} at once than this node accepts from {client} "
                                  f"in a period: {rate} (limit {name}); send at most {rate.count} at a time")
        decision = take(name, client, rate, tokens=cost)
        if not decision.allowed:
            raise _refusal(name, client, rate, decision, WHAT.get(name, "requests"))
        return decision
    size = lease_size(rate)
    if size == 1:
        decision = take(name, client, rate)
    else:
        now = time.time()
        key = _bucket_key(name, client)
        leases = _leases()
        left = leases.spend(key, now)
        if left is not None:
            return Decision(True, left, 0)
        decision = take(name, client, rate, now=now, tokens=size)
        if decision.allowed:
            leases.keep(key, size - 1, now)
        else:  # not a whole lease left: spend single tokens until the bucket is empty
            decision = take(name, client, rate, now=now)
    if not decision.allowed:
        raise _refusal(name, client, rate, decision, WHAT.get(name, "requests"))
    return decision


def rate_limited(
    name: str,
    *,
    key: Callable[[], str] = client_address,
    methods: tuple[str, ...] = ("POST",),
    failures_only: bool = False,
):
    """View decorator. Put it under the route decorator, above anything that reads the database:

        @web.route("/login", methods=["GET", "POST"])
        @rate_limited("login", failures_only=True)
        def login(): ...

    ``failures_only``: a request is refused while the bucket is empty, but only answers of 400 and more
    spend a token (failed sign-ins count, successful ones do not)."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            if request.method not in methods:
                return view(*args, **kwargs)
            rate = configured_rate(name)
            if rate is None:
                return view(*args, **kwargs)
            client = key()
            what = WHAT.get(name, "requests")
            if not failures_only:
                enforce(name, client)
                return view(*args, **kwargs)
            decision = peek(name, client, rate)
            if not decision.allowed:
                raise _refusal(name, client, rate, decision, what)
            try:
                response = current_app.make_response(view(*args, **kwargs))
            except Exception:
                take(name, client, rate)  # an error answer (abort(401), a domain error) is a failure
                raise
            if response.status_code >= 400:
                take(name, client, rate)
            return response

        wrapper.rate_limit = name  # type: ignore[attr-defined] - lets tests find limited views
        return wrapper

    return decorate


def validate_settings(config: dict[str, Any]) -> list[str]:
    """Problems with the HALLES_RATE_LIMIT_* settings, one line each (for ``config.validate``)."""
    problems = []
    for config_key, env_name, default in LIMITS.values():
        try:
            parse_rate(str(config.get(config_key, default)))
        except ValueError as exc:
            problems.append(f"{env_name}: {exc}")
    return problems
