"""Shared fixtures: a private Redis server, the simulated venue on free ports, feed workers."""

from __future__ import annotations

import os
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
from tests.support import PrivateRedis, free_port  # noqa: F401  (free_port is re-exported)
from trading.state import BookRecord, FxRecord, PriceRecord, StateManager


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
