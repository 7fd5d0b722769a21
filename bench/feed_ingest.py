"""Feed ingest: messages/s one Binance feed worker sustains from the venue into Redis, and tick
latency (venue stamps and sends an event -> the value is readable in Redis), p50/p99.

    .venv/bin/python bench/feed_ingest.py --rate 5000 --rate 20000 --rate 30000 --seconds 10

The venue streams diff-depth events over 10 markets in its firehose mode (own process); the feed
worker runs as `python -m marketdata.feeds --exchange binance` (own process) against a private Redis.
Latency is read off the feed's own notification: on each `arbitrage:ticks` message the bench
reads the announced price's exchange timestamp (µs, timeUnit=MICROSECOND) and compares with now.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import orjson
import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._harness import FEEDS, cpu_seconds, free_port, percentile, spawn, start_redis, stop, wait_http  # noqa: E402

SYMBOLS = "BTC,ETH,XRP,SOL,DOGE,ADA,TRX,LINK,AVAX,DOT"


def measure(rate: float, seconds: float, warmup: float) -> dict:
    redis_proc, redis_url = start_redis()
    upbit_port, binance_port = free_port(), free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "DJANGO_SETTINGS_MODULE": "arbproject.settings",
           "BINANCE_WS_URL": f"ws://127.0.0.1:{binance_port}", "BINANCE_REST_URL": f"http://127.0.0.1:{binance_port}",
           "FEED_BINANCE_TIME_UNIT": "MICROSECOND", "LOG_LEVEL": "ERROR"}
    venue = spawn(["run_venue", "--upbit-port", str(upbit_port), "--binance-port", str(binance_port),
                   "--firehose", str(rate)], env)
    feed = None
    try:
        base = f"http://127.0.0.1:{binance_port}"
        wait_http(f"{base}/api/v3/ping")
        feed = spawn([*FEEDS, "--exchange", "binance", "--symbols", SYMBOLS], env)
        client = redis.Redis.from_url(redis_url)
        latencies: list[float] = []
        transit: list[float] = []  # venue stamped -> feed flushed (received_at is taken at flush)
        stop_flag = threading.Event()

        def listen():
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe("arbitrage:ticks")
            reader = redis.Redis.from_url(redis_url)
            last = 0.0
            while not stop_flag.is_set():
                msg = pubsub.get_message(timeout=0.5)
                if msg is None:
                    continue
                now = time.time()
                if now - last < 0.002:  # sample at most ~500 notifications a second
                    continue
                last = now
                exchange, symbol = orjson.loads(msg["data"])[0].split(":")
                stamp, received = reader.hmget(f"arbitrage:prices:{exchange}:{symbol}", "timestamp", "received_at")
                if stamp and measuring.is_set():
                    sent = datetime.fromisoformat(stamp.decode()).timestamp()
                    latencies.append((time.time() - sent) * 1000)
                    transit.append((datetime.fromisoformat(received.decode()).timestamp() - sent) * 1000)

        measuring = threading.Event()
        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        time.sleep(warmup)

        def processed() -> int:
            raw = client.hget("arbitrage:feedstats:binance", "messages")
            return int(raw) if raw else 0

        # feedstats is written once a second: align to a fresh write before and after.
        start_count = processed()
        while processed() == start_count:
            time.sleep(0.01)
        t0, n0, cpu0, vcpu0 = time.monotonic(), processed(), cpu_seconds(feed.pid), cpu_seconds(venue.pid)
        sent0 = requests.get(f"{base}/_venue/state", timeout=5).json()["firehose_sent"]
        measuring.set()
        time.sleep(seconds)
        end_count = processed()
        while processed() == end_count:
            time.sleep(0.01)
        t1, n1, cpu1, vcpu1 = time.monotonic(), processed(), cpu_seconds(feed.pid), cpu_seconds(venue.pid)
        sent1 = requests.get(f"{base}/_venue/state", timeout=5).json()["firehose_sent"]
        measuring.clear()
        stop_flag.set()
        listener.join(2)
        stats = {k.decode(): v.decode() for k, v in client.hgetall("arbitrage:feedstats:binance").items()}
        elapsed = t1 - t0
        return {
            "offered": (sent1 - sent0) / elapsed,
            "processed": (n1 - n0) / elapsed,
            "cpu": (cpu1 - cpu0) / elapsed,
            "venue_cpu": (vcpu1 - vcpu0) / elapsed,
            "t50": percentile(transit, 50),
            "t99": percentile(transit, 99),
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "samples": len(latencies),
            "resyncs": stats.get("resyncs"),
            "reconnects": stats.get("reconnects"),
        }
    finally:
        stop(*(p for p in (feed, venue, redis_proc) if p))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, action="append", help="events/s offered (repeatable)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args()
    rates = args.rate or [5000, 20000, 25000]
    print("latency = venue stamps the event -> value readable in Redis (notification received);")
    print("flush = venue stamps the event -> feed starts the Redis write for it")
    print(f"{'offered/s':>10} {'processed/s':>12} {'feed CPU':>9} {'venue CPU':>9} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'flush p50':>9} {'flush p99':>9} {'samples':>8} resyncs reconnects")
    for rate in rates:
        r = measure(rate, args.seconds, args.warmup)
        print(f"{r['offered']:>10.0f} {r['processed']:>12.0f} {r['cpu']:>9.0%} {r['venue_cpu']:>9.0%} {r['p50']:>7.2f} "
              f"{r['p99']:>7.2f} {r['t50']:>9.2f} {r['t99']:>9.2f} {r['samples']:>8} {r['resyncs']:>7} {r['reconnects']:>10}",
              flush=True)


if __name__ == "__main__":
    main()
