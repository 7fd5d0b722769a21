"""Shared fixtures: a private Redis server, the simulated venue on free ports, feed workers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest
import redis
from django.conf import settings

from marketdata.venue.core import Venue
from marketdata.venue.market import MarketModel
from marketdata.venue.server import VenueServer, VenueThread
from trading.state import StateManager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url():
    """A redis-server of the test session's own, so no test touches anybody else's data."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; `make test` installs it (apt-get install redis-server)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="kimp-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir, "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the private redis-server did not start")
    url = f"redis://127.0.0.1:{port}/0"
    os.environ["REDIS_URL"] = url  # for subprocesses (workers, commands)
    yield url
    proc.terminate()
    proc.wait(5)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _use_private_redis(redis_url, monkeypatch):
    monkeypatch.setattr(settings, "REDIS_URL", redis_url)


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
