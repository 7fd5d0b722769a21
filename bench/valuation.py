"""What the live metrics cost as the ledger grows: the ledger's replay (docs/ACCOUNTING.md) from the
start, versus going on from the previous one (accounting.replay), and the whole metrics record.

    .venv/bin/python bench/valuation.py --fills 10000 --fills 100000

Per ledger size, on a scratch PostgreSQL database (--sqlite: a scratch file) and a private Redis: the
ledger is filled with N fills of pairs across 50 coins (3 entries each: the coin, the quote, the fee),
then the figures the metrics task computes every second are timed while one more pair is booked
between readings, as in a live run:
    from the start    accounting.replay(until=...): every entry read and applied (what each second cost before)
    going on          accounting.replay(): the entries read are checked, the new ones applied
    metrics record    metrics.compute: the record beat publishes every second
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import _harness as h  # noqa: E402

COINS = [f"C{i:02d}" for i in range(50)]


def fill_ledger(n: int) -> None:
    """n fills, in bulk: half buys of a coin on Binance for USDT, half sells on Upbit for KRW."""
    from trading.models import Fill, LedgerEntry, Order, Pair

    pair = Pair.objects.create(symbol="C00", buy_exchange="binance", sell_exchange="upbit", fx_rate=Decimal("1400"))
    step = 5000
    for start in range(0, n, step):
        orders, fills, entries = [], [], []
        for i in range(start, min(n, start + step)):
            coin, binance = COINS[i % len(COINS)], i % 2 == 0
            orders.append(Order(client_order_id=f"b{i}", pair=pair, exchange="binance" if binance else "upbit", symbol=coin,
                                side="buy" if binance else "sell", quantity=Decimal("0.01"), price=Decimal("100")))
        Order.objects.bulk_create(orders)
        for i, order in enumerate(orders, start):
            fills.append(Fill(order=order, trade_id=f"t{i}", price=order.price, quantity=order.quantity,
                              fee=Decimal("0.00001"), fee_asset=order.symbol))
        Fill.objects.bulk_create(fills)
        for fill in fills:
            order, binance = fill.order, fill.order.exchange == "binance"
            value = Decimal("1400") if binance else Decimal("1401")  # 0.01 x 100 USDT x 1,400; 0.01 x 140,100 KRW
            sign = 1 if binance else -1
            quote = "USDT" if binance else "KRW"
            entries += [
                LedgerEntry(venue=order.exchange, asset=order.symbol, amount=sign * order.quantity, kind="trade", fill=fill,
                            value_krw=value),
                LedgerEntry(venue=order.exchange, asset=quote, amount=-sign * (Decimal("1") if binance else Decimal("1401")),
                            kind="trade", fill=fill, value_krw=value),
                LedgerEntry(venue=order.exchange, asset=order.symbol, amount=-fill.fee, kind="fee", fill=fill,
                            value_krw=Decimal("1.4")),
            ]
        LedgerEntry.objects.bulk_create(entries)
        entries = []


def timed(fn, rounds: int, between=None) -> float:
    """Median milliseconds of fn over rounds, with between() (untimed) before each."""
    samples = []
    for _ in range(rounds):
        if between:
            between()
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return h.percentile(samples, 50)


def measure(n: int, rounds: int) -> dict:
    from trading import accounting, ledger, metrics
    from trading.engine import get_state
    from trading.models import Fill, LedgerEntry, Order, Pair
    from trading.state import PriceRecord

    for model in (LedgerEntry, Fill, Order, Pair):
        model.objects.all().delete()
    ledger.deposit("upbit", "KRW", Decimal("1000000000"), value_krw=Decimal("1000000000"))
    ledger.deposit("binance", "USDT", Decimal("1000000"), value_krw=Decimal("1400000000"))
    fill_ledger(n)
    state = get_state()
    now = datetime.now(UTC)
    state.write_market([PriceRecord(venue, coin, Decimal("99"), Decimal("101"), Decimal("100"), now, now)
                        for venue in ("upbit", "binance") for coin in COINS])
    later = now + timedelta(days=1)
    booked = [0]

    def book_one():  # the next pair's entries, as a live run books them between two readings
        booked[0] += 1
        ledger.post_many([LedgerEntry(venue="upbit", asset="C01", amount=Decimal("-0.001"), kind="trade", value_krw=Decimal("140")),
                          LedgerEntry(venue="upbit", asset="KRW", amount=Decimal("140"), kind="trade", value_krw=Decimal("140"))])

    entries = LedgerEntry.objects.count()
    started = time.perf_counter()
    accounting.replay()
    first = (time.perf_counter() - started) * 1000
    return {
        "fills": n, "entries": entries, "first": first,
        "from_start": timed(lambda: accounting.replay(until=later), max(3, rounds // 4), book_one),
        "going_on": timed(accounting.replay, rounds, book_one),
        "metrics": timed(lambda: metrics.compute(state, Decimal("1400")), rounds, book_one),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fills", type=int, action="append", help="ledger sizes, in fills (default 10,000 and 100,000)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--sqlite", action="store_true", help="a scratch SQLite file instead")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="kimp-bench-valuation-"))
    database_url, drop = h.scratch_database(None if args.sqlite else args.postgres, scratch)
    redis_server, redis_url = h.start_redis()
    os.environ.update(REDIS_URL=redis_url, DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="arbproject.settings",
                      LOG_LEVEL="ERROR")
    try:
        subprocess.run([h.PY, "manage.py", "migrate", "-v", "0"], cwd=h.ROOT, check=True)
        import django

        django.setup()
        print(f"{'fills':>8} {'entries':>8} {'first':>9} {'from start':>11} {'going on':>9} {'metrics':>9}   (ms; median of "
              f"{args.rounds} readings, one pair booked before each; 'first': a process's first replay)")
        for n in args.fills or [10_000, 100_000]:
            r = measure(n, args.rounds)
            print(f"{r['fills']:>8} {r['entries']:>8} {r['first']:>9.1f} {r['from_start']:>11.1f} {r['going_on']:>9.1f} "
                  f"{r['metrics']:>9.1f}", flush=True)
    finally:
        from django.db import connections

        connections.close_all()
        h.stop(redis_server)
        drop()


if __name__ == "__main__":
    main()
