"""Feed worker memory: the resident set of `python -m marketdata.feeds --exchange binance` streaming a
venue of many coins (the target is at most 80 MB: a feed imports only what its job needs).

    .venv/bin/python bench/feed_memory.py --coins 200 --seconds 20
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._harness import FEEDS, free_port, spawn, start_redis, stop, tree_memory_mb, wait_http  # noqa: E402


def measure(coins: int, seconds: float) -> dict:
    redis_proc, redis_url = start_redis()
    upbit_port, binance_port = free_port(), free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "DJANGO_SETTINGS_MODULE": "arbproject.settings",
           "UPBIT_WS_URL": f"ws://127.0.0.1:{upbit_port}", "UPBIT_REST_URL": f"http://127.0.0.1:{upbit_port}",
           "BINANCE_WS_URL": f"ws://127.0.0.1:{binance_port}", "BINANCE_REST_URL": f"http://127.0.0.1:{binance_port}",
           "LOG_LEVEL": "ERROR"}
    venue = spawn(["run_venue", "--upbit-port", str(upbit_port), "--binance-port", str(binance_port),
                   "--coins", str(coins)], env)
    feed = None
    try:
        wait_http(f"http://127.0.0.1:{binance_port}/api/v3/ping", timeout=90)
        feed = spawn([*FEEDS, "--exchange", "binance"], env)
        samples = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(1)
            if feed.poll() is not None:
                raise RuntimeError(f"the feed exited ({feed.returncode})")
            samples.append(tree_memory_mb(feed.pid)[0])
        return {"coins": coins, "rss_mb_last": round(samples[-1], 1), "rss_mb_max": round(max(samples), 1)}
    finally:
        stop(*(p for p in (feed, venue) if p), redis_proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coins", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    print(measure(args.coins, args.seconds))


if __name__ == "__main__":
    main()
