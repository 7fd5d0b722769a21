"""Pair latency against the venue: the live executor sends both legs at once over signed HTTP;
measured from the call to both legs acknowledged and booked in the ledger.

    .venv/bin/python bench/pair_latency.py --pairs 200

The venue runs in its own process with its books held still; each pair buys 0.001 BTC on Binance
and sells it on Upbit (IOC limits), alternating with the reverse so balances stay level.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._harness import PY, ROOT, free_port, percentile, spawn, start_redis, stop, wait_http  # noqa: E402

SECRET = "p" * 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=200)
    args = parser.parse_args()
    redis_server, redis_url = start_redis()
    db = Path(tempfile.mkdtemp(prefix="kimp-bench-db-")) / "pairs.sqlite3"
    os.environ.update(REDIS_URL=redis_url, DATABASE_URL=f"sqlite:///{db}", DJANGO_SETTINGS_MODULE="arbproject.settings",
                      LOG_LEVEL="ERROR")
    import subprocess

    subprocess.run([PY, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True)
    import django

    django.setup()
    from trading.engine import fees, get_state
    from trading.exchanges.binance import BinanceAdapter
    from trading.exchanges.upbit import UpbitAdapter
    from trading.execution import PairExecutor, PairRequest
    from trading.models import Pair

    up, bn = free_port(), free_port()
    accounts = [{"exchange": "binance", "key": "pair-key", "secret": SECRET, "balances": {"USDT": "10000000", "BTC": "100"}},
                {"exchange": "upbit", "key": "pair-key", "secret": SECRET, "balances": {"KRW": "100000000000", "BTC": "100"}}]
    venue = spawn(["run_venue", "--upbit-port", str(up), "--binance-port", str(bn)],
                  {**os.environ, "VENUE_ACCOUNTS": json.dumps(accounts)})
    try:
        binance_url, upbit_url = f"http://127.0.0.1:{bn}", f"http://127.0.0.1:{up}"
        wait_http(binance_url + "/api/v3/ping")
        requests.post(binance_url + "/_venue/control", json={"action": "pause"}, timeout=5)
        adapters = {"binance": BinanceAdapter(binance_url, "pair-key", SECRET), "upbit": UpbitAdapter(upbit_url, "pair-key", SECRET)}
        adapters["binance"].filters("BTCUSDT")
        state = get_state()
        executor = PairExecutor(state, fees(), adapters, mode="live")
        ask = Decimal(requests.get(binance_url + "/api/v3/ticker/bookTicker", params={"symbol": "BTCUSDT"}, timeout=5).json()["askPrice"])
        bid_b = Decimal(requests.get(binance_url + "/api/v3/ticker/bookTicker", params={"symbol": "BTCUSDT"}, timeout=5).json()["bidPrice"])
        units = requests.get(upbit_url + "/v1/orderbook", params={"markets": "KRW-BTC"}, timeout=5).json()[0]["orderbook_units"][0]
        bid_u, ask_u = Decimal(str(units["bid_price"])), Decimal(str(units["ask_price"]))
        latencies, states = [], {}
        for i in range(args.pairs):
            forward = i % 2 == 0
            buy, sell = ("binance", "upbit") if forward else ("upbit", "binance")
            pair = Pair.objects.create(symbol="BTC", buy_exchange=buy, sell_exchange=sell, mode="live")
            request = PairRequest("BTC", buy, sell, Decimal("0.001"), ask if forward else ask_u, bid_u if forward else bid_b,
                                  Decimal("1400"), Decimal("0.00001"))
            started = time.perf_counter()
            pair = executor.execute(pair, request)  # each stage commits on its own, as in production
            latencies.append((time.perf_counter() - started) * 1000)
            states[pair.state] = states.get(pair.state, 0) + 1
        print(f"pairs {args.pairs}: both legs acknowledged and booked p50 {percentile(latencies, 50):.2f} ms, "
              f"p99 {percentile(latencies, 99):.2f} ms; outcomes {states}")
    finally:
        stop(venue)
        stop(redis_server)


if __name__ == "__main__":
    main()
