"""Shared fixtures: the run's own scratch database, a private Redis server, the simulated venue on
free ports, feed workers."""

from __future__ import annotations

import os
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest
import redis
from django.conf import settings

from marketdata.venue.core import Venue
from marketdata.venue.market import MarketModel
from marketdata.venue.server import VenueServer, VenueThread
from tests.support import PrivateRedis, database_url, free_port  # noqa: F401  (free_port is re-exported)
from trading.state import BookRecord, FxRecord, PriceRecord, StateManager

SQLITE = "django.db.backends.sqlite3"


def pytest_configure(config):
    """Name this run's scratch database and point every process the tests start at it.

    `make test` passes DATABASE_TEST_NAME (so that it can drop the database even after a crash);
    any other run gets a name of its own here: kimp_test_<pid>_<random> on PostgreSQL, a file
    .run/test-<pid>-<random>.sqlite3 on SQLite. Django creates it (on PostgreSQL through the
    server's `postgres` database), and drops it at the end of the session; nothing else is touched.
    """
    db = settings.DATABASES["default"]
    expected = os.environ.get("KIMP_TEST_DB_ENGINE")  # set by `make test` for each of its two runs
    if expected and db["ENGINE"].rsplit(".", 1)[-1] != expected:
        raise pytest.UsageError(f"this run should use {expected} but DATABASE_URL selects {db['ENGINE']}")
    test = db.setdefault("TEST", {})
    if not os.environ.get("DATABASE_TEST_NAME"):
        token = f"{os.getpid()}_{secrets.token_hex(4)}"
        if db["ENGINE"] == SQLITE:
            test["NAME"] = str(Path(settings.BASE_DIR) / ".run" / f"test-{token}.sqlite3")
        else:
            test["NAME"] = f"{db['NAME']}_test_{token}"[-63:]  # PostgreSQL keeps 63 bytes of a name
    if db["ENGINE"] == SQLITE:
        Path(test["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Settings were read at start-up; this is for subprocesses (workers, servers, commands).
    os.environ["DATABASE_URL"] = database_url(test["NAME"])


def pytest_report_header(config):
    db = settings.DATABASES["default"]
    where = "" if db["ENGINE"] == SQLITE else f" on {db.get('HOST') or 'local socket'}:{db.get('PORT') or 5432}"
    return f"database: {db['ENGINE'].rsplit('.', 1)[-1]}, scratch {db['TEST']['NAME']}{where}"


def pytest_collection_modifyitems(config, items):
    if settings.DATABASES["default"]["ENGINE"] != SQLITE:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (make test runs the suite on it)")
    for item in items:
        if item.get_closest_marker("postgresql"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's scratch database, and before it drops the database: end the sessions that
    threads or processes of the tests may have left open on it, or PostgreSQL refuses the DROP."""
    yield
    from django.db import connection, connections

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        connections.close_all()


@pytest.fixture(scope="session")
def redis_url():
    """A redis-server of the test session's own, so no test touches anybody else's data."""
    try:
        server = PrivateRedis().start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    os.environ["REDIS_URL"] = server.url  # for subprocesses (workers, commands)
    # Settings computed these from the environment at import; point them all at our server.
    from arbproject.celery import app as celery_app

    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        setattr(settings, name, server.url)
    settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [server.url]
    celery_app.conf.broker_url = celery_app.conf.result_backend = server.url
    from trading.engine import get_state

    get_state.cache_clear()
    yield server.url
    server.cleanup()


@pytest.fixture(autouse=True)
def _use_private_redis(redis_url, monkeypatch):
    monkeypatch.setattr(settings, "REDIS_URL", redis_url)
    yield
    # Every test starts from an empty hot state; the server is ours alone, so flushing is safe.
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    from trading import evaluation

    evaluation.forget()  # what the screen remembers of the premiums it stored


@pytest.fixture(scope="session", autouse=True)
def _run_dir():
    (Path(settings.BASE_DIR) / ".run").mkdir(exist_ok=True)


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.flushdb()  # the private server holds only what the tests wrote
    client.close()


@pytest.fixture
def state(redis_client):
    return StateManager(redis_client)


def start_venue(seed: int, *accounts: tuple, drive: bool = True, paused: bool = False, **venue_kwargs) -> VenueThread:
    """The simulated venue on free ports with these accounts: (exchange, key, secret, balances[, options])."""
    from marketdata.venue.accounts import Accounts

    book = Accounts()
    for exchange, key, secret, balances, *options in accounts:
        book.add(exchange, key, secret, balances, **(options[0] if options else {}))
    thread = VenueThread(VenueServer(Venue(MarketModel(seed=seed), **venue_kwargs), accounts=book, drive=drive)).start()
    if paused:
        thread.call(thread.server.control, None, "pause")  # hold the books still while a pair runs
    return thread


@pytest.fixture
def venue():
    """The simulated venue on free ports, stepping fast so tests see updates quickly."""
    server = VenueServer(Venue(MarketModel(seed=11), step_hz=20, ping_interval=20.0))
    thread = VenueThread(server).start()
    yield thread
    thread.stop()


@pytest.fixture
def market(state):
    """Write both venues' books for a coin (and the KRW/USDT rate) as the feeds would."""

    def put(symbol="BTC", upbit_bids=(("139000000", "1"),), upbit_asks=(("139100000", "1"),),
            binance_bids=(("99000", "1"),), binance_asks=(("99010", "1"),), fx="1400", age_ms=0, skew_ms=0):
        now = datetime.now(UTC) - timedelta(milliseconds=age_ms)
        books = [
            BookRecord("upbit", symbol, [(D(p), D(q)) for p, q in upbit_bids], [(D(p), D(q)) for p, q in upbit_asks], now, now),
            BookRecord("binance", symbol, [(D(p), D(q)) for p, q in binance_bids], [(D(p), D(q)) for p, q in binance_asks],
                       now - timedelta(milliseconds=skew_ms), now),
        ]
        prices = [PriceRecord(b.exchange, symbol, b.bids[0][0], b.asks[0][0], (b.bids[0][0] + b.asks[0][0]) / 2,
                              b.timestamp, now) for b in books]
        rate = FxRecord("upbit", D(fx), D(fx) - D("0.5"), D(fx) + D("0.5"), now)
        state.write_market(prices, books, [rate])
        state.set_rules("binance", symbol, {"step_size": "0.00001", "tick_size": "0.01", "min_notional": "5"})

    return put


def feed_kwargs(venue_thread: VenueThread, exchange: str) -> dict:
    server = venue_thread.server
    if exchange == "upbit":
        return {"ws_url": server.upbit_ws_url, "rest_url": server.upbit_url}
    return {"ws_url": server.binance_ws_url, "rest_url": server.binance_url}


class RunningFeed:
    """A feed worker running in a thread, stopped at the end of the test."""

    def __init__(self, feed):
        self.feed = feed
        self.thread = threading.Thread(target=feed.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self.feed

    def __exit__(self, *exc):
        self.feed.stop()
        self.thread.join(5)


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02):
    """Poll until predicate() is truthy; return its value or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def set_limits(**changes):
    """Change GuardLimits in the database and make every cache re-read them."""
    from liveguard.models import GuardLimits
    from trading import engine

    obj = GuardLimits.load()
    for name, value in changes.items():
        setattr(obj, name, value)
    obj.save()
    engine.forget_limits()
    return obj


def balances_from_deposits_and_fills() -> dict:
    """What every balance must be, recomputed from deposits and fills alone (fees as charged)."""
    from collections import defaultdict

    from trading.models import Fill, LedgerEntry

    expected = defaultdict(D)
    for entry in LedgerEntry.objects.filter(kind="deposit"):
        expected[(entry.venue, entry.asset)] += entry.amount
    quote = {"upbit": "KRW", "binance": "USDT"}
    for fill in Fill.objects.select_related("order"):
        order = fill.order
        sign = 1 if order.side == "buy" else -1
        expected[(order.exchange, order.symbol)] += sign * fill.quantity
        expected[(order.exchange, quote[order.exchange])] -= sign * (fill.price * fill.quantity).quantize(D("1e-8"))
        expected[(order.exchange, fill.fee_asset)] -= fill.fee
    return dict(expected)
