"""The WebSockets through a real ASGI server (uvicorn), the relay process and the Redis channel layer."""

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import orjson
import pytest
import redis
import requests
import websocket

from liveguard.services import set_kill_switch
from tests.conftest import wait_for
from tests.support import database_url, free_port, stop_processes
from trading.state import SIGNALS_CHANNEL, MetricsRecord, SignalRecord

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(redis_url):
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": database_url(),
           "LOG_LEVEL": "WARNING"}
    bin_dir = Path(sys.executable).parent
    procs = [
        subprocess.Popen([str(bin_dir / "uvicorn"), "arbproject.asgi:application", "--port", str(port), "--lifespan", "off",
                          "--log-level", "warning"], cwd=ROOT, env=env),
        subprocess.Popen([sys.executable, "manage.py", "run_relay"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL),
    ]
    wait_for(lambda: _up(port), timeout=20, interval=0.1)
    # The relay must be listening before a test publishes, or the announcement is lost.
    client = redis.Redis.from_url(redis_url)
    wait_for(lambda: client.pubsub_numsub(SIGNALS_CHANNEL)[0][1] >= 1, timeout=20, interval=0.1)
    client.close()
    yield f"127.0.0.1:{port}"
    stop_processes(procs)


def _up(port):
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code in (200, 503)
    except requests.ConnectionError:
        return False


def recv_until(ws, predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ws.settimeout(max(0.1, deadline - time.monotonic()))
        msg = orjson.loads(ws.recv())
        if predicate(msg):
            return msg
    raise AssertionError("no matching message")


def test_a_stored_signal_reaches_a_connected_client(server, state):
    ws = websocket.create_connection(f"ws://{server}/ws/signals", timeout=5)
    snapshot = orjson.loads(ws.recv())
    assert snapshot["type"] == "snapshot"
    sent = time.monotonic()
    state.save_signal(SignalRecord("SOL", "binance", "upbit", D("250000"), D("255000"), D("5000"), D("2"), datetime.now(UTC)))
    msg = recv_until(ws, lambda m: m.get("type") == "signal")
    assert msg["data"]["symbol"] == "SOL" and msg["data"]["sell_price"] == "255000"
    assert time.monotonic() - sent < 1.0
    ws.close()
    # A new client gets the stored signal in its snapshot, without waiting.
    ws = websocket.create_connection(f"ws://{server}/ws/signals", timeout=5)
    assert [s["symbol"] for s in orjson.loads(ws.recv())["signals"]] == ["SOL"]
    ws.close()


def test_metrics_arrive_every_second_and_the_kill_switch_shows_at_once(server, state):
    state.set_metrics(MetricsRecord(D("123"), D("100"), 0, 0, D("0"), D("0"), 0))
    ws = websocket.create_connection(f"ws://{server}/ws/metrics", timeout=5)
    first = orjson.loads(ws.recv())
    assert first["type"] == "metrics" and first["metrics"]["total_balance"] == "123" and first["kill_switch"] is False
    recv_until(ws, lambda m: m.get("type") == "metrics", timeout=3)  # the relay's periodic push
    set_kill_switch(state, True)
    from dashboard.relay import announce_control

    announce_control(state)
    assert recv_until(ws, lambda m: m.get("kill_switch") is True, timeout=2)
    ws.close()


def test_websocket_honours_the_read_token(server, state, settings):
    # The server process reads its own settings; check the consumer logic in-process instead.
    from dashboard.consumers import LiveConsumer

    settings.API_READ_TOKEN = "t0ken"
    consumer = LiveConsumer()
    consumer.scope = {"user": None, "subprotocols": ["kimp.token.t0ken"]}
    assert consumer.allowed() == (True, "kimp.token.t0ken")
    consumer.scope = {"user": None, "subprotocols": ["kimp.token.nope"]}
    assert consumer.allowed() == (False, None)
    # never from the URL (it ends up in access logs)
    consumer.scope = {"user": None, "query_string": b"token=t0ken", "subprotocols": []}
    assert consumer.allowed() == (False, None)
