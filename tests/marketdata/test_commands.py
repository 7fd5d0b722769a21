"""The management commands the demo and production run, as real processes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from marketdata.feeds.upbit import UpbitFeed
from tests.conftest import RunningFeed, feed_kwargs, wait_for
from tests.support import PrivateRedis, free_port
from trading.state import StateManager

ROOT = Path(__file__).resolve().parents[2]
COINS = ["ADA", "AVAX", "BTC", "DOGE", "DOT", "ETH", "LINK", "SOL", "TRX", "XRP"]


def manage(*args, env):
    return subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_run_venue_and_run_feeds_fill_redis_and_stop_cleanly_on_sigterm(redis_url, state):
    up, bn = free_port(), free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "UPBIT_REST_URL": f"http://127.0.0.1:{up}",
           "UPBIT_WS_URL": f"ws://127.0.0.1:{up}/websocket/v1", "BINANCE_REST_URL": f"http://127.0.0.1:{bn}",
           "BINANCE_WS_URL": f"ws://127.0.0.1:{bn}"}
    # Feeds first: they must wait for the venue rather than give up.
    feeds = manage("run_feeds", env=env)
    time.sleep(0.5)
    venue = manage("run_venue", "--upbit-port", str(up), "--binance-port", str(bn), "--seed", "3", env=env)
    try:
        for exchange in ("upbit", "binance"):
            for coin in COINS:
                wait_for(lambda e=exchange, c=coin: state.get_price(e, c), timeout=15)
        assert state.get_fx("upbit") is not None
    finally:
        for proc in (feeds, venue):
            proc.send_signal(signal.SIGTERM)
        outputs = [proc.communicate(timeout=10)[0] for proc in (feeds, venue)]
    assert feeds.returncode == 0, outputs[0]
    assert venue.returncode == 0, outputs[1]
    assert "discovery failed" in outputs[0]  # it retried while the venue was starting


def test_feed_rides_out_redis_going_away(venue):
    server = PrivateRedis().start()
    client = redis.Redis(port=server.port, socket_timeout=2)
    state = StateManager(client)
    feed = UpbitFeed(state, ["BTC"], max_backoff=0.2, **feed_kwargs(venue, "upbit"))
    runner = RunningFeed(feed)
    try:
        with runner:
            wait_for(lambda: state.get_price("upbit", "BTC"))
            server.stop()
            time.sleep(3.0)  # writes fail or wait in redis-py's retries; the worker must not die
            server.start()
            wait_for(lambda: _safe_price(state), timeout=10)
            assert runner.thread.is_alive()
    finally:
        server.cleanup()


def _safe_price(state):
    try:
        return state.get_price("upbit", "BTC")
    except redis.RedisError:
        return None
