"""Tick -> signal and tick -> paper fill latency through Redis and Celery, and evaluations per second.

    .venv/bin/python bench/signal_latency.py --coins 60 --step-hz 2 --step-hz 10 --seconds 10

Every process is real and separate: the venue (N coins; the first --hot of them with the premium
forced to 1 %, so that each of their ticks makes a signal and a pair), one feed worker per exchange, the dispatcher, one Celery worker, a private
Redis and a scratch SQLite database. Latency runs from the moment the feed received the newer of
the two books (`tick_received_at`, stamped at flush) to the moment this process hears the signal
(or the execution) announced after it was stored.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._harness import (  # noqa: E402
    FEEDS,
    PY,
    ROOT,
    TickLatency,
    free_port,
    percentile,
    spawn,
    start_redis,
    stop,
    tree_cpu_seconds,
    wait_http,
)
from trading.state import StateManager  # noqa: E402


def run(coins: int, step_hz: float, seconds: float, pool: str, concurrency: int, hot: int) -> dict:
    redis_server, redis_url = start_redis()
    db = Path(tempfile.mkdtemp(prefix="kimp-bench-db-")) / "bench.sqlite3"
    up, bn = free_port(), free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": f"sqlite:///{db}", "LOG_LEVEL": "ERROR",
           "DJANGO_SETTINGS_MODULE": "arbproject.settings",
           "UPBIT_REST_URL": f"http://127.0.0.1:{up}", "UPBIT_WS_URL": f"ws://127.0.0.1:{up}/websocket/v1",
           "BINANCE_REST_URL": f"http://127.0.0.1:{bn}", "BINANCE_WS_URL": f"ws://127.0.0.1:{bn}",
           # Funds deep enough that a 10 s run never runs dry.
           "PAPER_START_KRW": "10000000000", "PAPER_START_USDT": "7000000", "PAPER_START_COIN_KRW": "1000000000"}
    subprocess.run([PY, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    subprocess.run([PY, "manage.py", "shell", "-c", (
        "from decimal import Decimal as D; from liveguard.services import update_limits; "
        "update_limits(min_spread_pct=D('0.05'), max_position_size=D('5000000'), max_trades_per_hour=10**9, "
        "max_trades_per_day=10**9, max_slippage_pct=D('50'), max_daily_loss=D('1e10'), max_total_loss=D('1e10'), "
        "block_market_warnings=False)")], cwd=ROOT, env=env, check=True)
    procs = [spawn(["run_venue", "--coins", str(coins), "--step-hz", str(step_hz), "--upbit-port", str(up),
                    "--binance-port", str(bn)], env)]
    wait_http(f"http://127.0.0.1:{bn}/api/v3/ping")
    state = requests.get(f"http://127.0.0.1:{bn}/_venue/state", timeout=5).json()
    symbols = [m[:-4] for m in state["binance_markets"]]
    for symbol in symbols[:hot]:
        requests.post(f"http://127.0.0.1:{bn}/_venue/control", json={"action": "premium", "symbol": symbol, "premium": 0.01}, timeout=5)
    worker = subprocess.Popen([str(Path(PY).parent / "celery"), "-A", "arbproject", "worker", "-P", pool, "-c", str(concurrency),
                               "-l", "error", "--without-mingle", "--without-gossip", "--without-heartbeat"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs += [spawn([*FEEDS, "--exchange", "upbit"], env), spawn([*FEEDS, "--exchange", "binance"], env),
              spawn(["run_signals"], env), worker]
    client = redis.Redis.from_url(redis_url)
    latency = TickLatency(client).start()
    try:
        deadline = time.monotonic() + 60
        while len(StateManager(client).premium_symbols()) < coins and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # warm-up: funding deposits, first pairs, caches
        w0, t0, c0 = time.time(), time.monotonic(), tree_cpu_seconds(worker.pid)
        latency.measuring.set()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            # Each pair adds to its coin's exposure; clear it so the position limit does not end the run.
            keys = client.keys("arbitrage:guard:exposure:*")
            if keys:
                client.delete(*keys)
            time.sleep(0.25)
        latency.measuring.clear()
        w1, t1, c1 = time.time(), time.monotonic(), tree_cpu_seconds(worker.pid)
        # Coins screened, from the batches' own record.
        evaluated = sum(n for at, n, _ in StateManager(client).batch_samples() if w0 <= at <= w1)
    finally:
        latency.stop()
        stop(*reversed(procs))
        stop(redis_server)
    return {
        "evals": evaluated / (t1 - t0), "worker_cpu": (c1 - c0) / (t1 - t0), "signals": len(latency.signals),
        "fills": len(latency.fills), "s50": percentile(latency.signals, 50), "s99": percentile(latency.signals, 99),
        "f50": percentile(latency.fills, 50), "f99": percentile(latency.fills, 99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coins", type=int, default=60)
    parser.add_argument("--step-hz", type=float, action="append", help="book updates per coin per second (repeatable)")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--pool", default="solo")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--hot", type=int, default=5, help="coins whose premium is forced to 1 %% (a signal on every tick)")
    args = parser.parse_args()
    print(f"{'coins':>5} {'ticks/s':>8} {'evals/s':>8} {'worker CPU':>10} {'signals':>8} {'sig p50':>8} {'sig p99':>8} "
          f"{'fills':>6} {'fill p50':>8} {'fill p99':>8}   (latencies in ms)")
    for hz in args.step_hz or [2.0, 10.0]:
        r = run(args.coins, hz, args.seconds, args.pool, args.concurrency, args.hot)
        print(f"{args.coins:>5} {args.coins * hz * 2:>8.0f} {r['evals']:>8.0f} {r['worker_cpu']:>10.0%} {r['signals']:>8} "
              f"{r['s50']:>8.2f} {r['s99']:>8.2f} {r['fills']:>6} {r['f50']:>8.2f} {r['f99']:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
