"""Adapter overhead per order (CPU in the client process, network and venue excluded), ours beside
ccxt, placing the same orders against the same venue in the same run; plus wall-clock latency.

    .venv/bin/python bench/adapter_overhead.py --orders 300

The venue runs in its own process. Orders are IOC limits priced away from the book (they are
accepted, matched, and expire unfilled), so every order costs the venue the same.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

import ccxt
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._harness import free_port, percentile, spawn, stop, wait_http  # noqa: E402

UPBIT_SECRET = "b" * 64


def measure(name, place, n):
    cpu, wall = [], []
    for i in range(n):
        c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
        place(i)
        cpu.append((time.thread_time_ns() - c0) / 1000)
        wall.append((time.perf_counter_ns() - w0) / 1e6)
    return name, percentile(cpu, 50), sum(cpu) / n, percentile(wall, 50), percentile(wall, 99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=300)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arbproject.settings")
    import django

    django.setup()
    from trading.exchanges.binance import BinanceAdapter
    from trading.exchanges.upbit import UpbitAdapter

    up, bn = free_port(), free_port()
    accounts = [{"exchange": "binance", "key": "bench-key", "secret": "bench-secret", "balances": {"USDT": "100000000", "BTC": "100"}},
                {"exchange": "upbit", "key": "bench-key", "secret": UPBIT_SECRET, "balances": {"KRW": "100000000000", "BTC": "100"}}]
    env = {**os.environ, "VENUE_ACCOUNTS": json.dumps(accounts), "LOG_LEVEL": "ERROR"}
    venue = spawn(["run_venue", "--upbit-port", str(up), "--binance-port", str(bn), "--step-hz", "1"], env)
    try:
        binance_url, upbit_url = f"http://127.0.0.1:{bn}", f"http://127.0.0.1:{up}"
        wait_http(binance_url + "/api/v3/ping")
        # Lift the request-weight limit for the run: this measures clients, not the venue's metering.
        bid = Decimal(requests.get(binance_url + "/api/v3/ticker/bookTicker", params={"symbol": "BTCUSDT"}, timeout=5).json()["bidPrice"])
        far = (bid / 2).quantize(Decimal("0.01"))
        ours = BinanceAdapter(binance_url, "bench-key", "bench-secret")
        ours.filters("BTCUSDT")
        theirs = ccxt.binance({"apiKey": "bench-key", "secret": "bench-secret",
                               "options": {"fetchMarkets": {"types": ["spot"]}, "fetchMargins": False, "fetchCurrencies": False}})
        theirs.urls["api"]["public"] = theirs.urls["api"]["private"] = binance_url + "/api/v3"
        theirs.load_markets()
        n = args.orders
        rows = [
            measure("kimp binance", lambda i: ours.place_order("BTCUSDT", "BUY", Decimal("0.01"), price=far, client_id=f"o{i}"), n),
            measure("ccxt binance", lambda i: theirs.create_order("BTC/USDT", "limit", "buy", 0.01, float(far),
                                                                  {"timeInForce": "IOC", "newClientOrderId": f"c{i}"}), n),
        ]
        ub = Decimal(str(requests.get(upbit_url + "/v1/orderbook", params={"markets": "KRW-BTC"}, timeout=5).json()[0]["orderbook_units"][0]["bid_price"]))
        ufar = (ub / 2 // 1000) * 1000
        uours = UpbitAdapter(upbit_url, "bench-key", UPBIT_SECRET)
        utheirs = ccxt.upbit({"apiKey": "bench-key", "secret": UPBIT_SECRET})
        utheirs.hostname = upbit_url.removeprefix("http://")
        utheirs.urls["api"] = {"public": "http://{hostname}", "private": "http://{hostname}"}
        utheirs.load_markets()
        rows += [
            measure("kimp upbit", lambda i: uours.place_order("KRW-BTC", "bid", "limit", volume=Decimal("0.001"), price=ufar,
                                                             time_in_force="ioc", identifier=f"uo{i}"), n),
            measure("ccxt upbit", lambda i: utheirs.create_order("BTC/KRW", "limit", "buy", 0.001, float(ufar),
                                                                 {"timeInForce": "ioc", "identifier": f"uc{i}"}), n),
        ]
        print(f"{'client':<14} {'CPU p50 µs':>11} {'CPU mean µs':>12} {'wall p50 ms':>12} {'wall p99 ms':>12}   ({n} orders each)")
        for name, c50, cmean, w50, w99 in rows:
            print(f"{name:<14} {c50:>11.0f} {cmean:>12.0f} {w50:>12.2f} {w99:>12.2f}")
    finally:
        stop(venue)


if __name__ == "__main__":
    main()
