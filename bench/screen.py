"""The batched screen alone: what one evaluation of one coin costs, on books in a private Redis.

    .venv/bin/python bench/screen.py --coins 200 --batch 20 --batch 200 [--profile]

Books for every coin come from the venue's market model (20 levels a side, as the feeds store them);
each round moves the model one step and writes every book, then evaluates the coins in batches of
--batch through trading.evaluation.evaluate_changed, exactly as the `evaluate` worker does. Prints, per
batch size: microseconds per coin and per batch (wall and CPU), and the round trips a batch made.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._harness import model_market, start_redis, stop  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coins", type=int, default=200)
    parser.add_argument("--batch", type=int, action="append", help="coins per batch (repeatable)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--profile", action="store_true", help="print where the time goes (cProfile, by own time)")
    args = parser.parse_args()
    redis_server, redis_url = start_redis()
    db = Path(tempfile.mkdtemp(prefix="kimp-bench-screen-")) / "bench.sqlite3"
    os.environ.update(REDIS_URL=redis_url, DATABASE_URL=f"sqlite:///{db}", DJANGO_SETTINGS_MODULE="arbproject.settings",
                      LOG_LEVEL="ERROR", METRICS_ENABLED="false")
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        run(args, redis_url)
    finally:
        stop(redis_server)


def run(args, redis_url: str) -> None:
    from datetime import UTC, datetime

    from marketdata.venue.market import MarketModel, make_coins
    from trading.evaluation import evaluate_changed
    from trading.state import StateManager

    state = StateManager.from_url(redis_url)
    model = MarketModel(make_coins(args.coins), seed=3)
    symbols = [c for c in model.coins if c != "BNB"][: args.coins]
    for symbol in symbols:
        f = model.coins[symbol].coin.filters
        state.set_rules("binance", symbol, {"step_size": str(f.step_size), "tick_size": str(f.tick_size), "min_notional": "5"})

    def write_books() -> None:
        model.step(1.0)
        prices, books, fx = model_market(model, symbols, datetime.now(UTC))
        state.write_market(prices, books, [fx])

    def commands() -> int:
        return int(state.redis.info("stats")["total_commands_processed"])

    profiler = cProfile.Profile() if args.profile else None
    print(f"{args.coins} coins; microseconds")
    print(f"{'batch':>6} {'per coin wall':>14} {'per coin CPU':>13} {'per batch wall':>15} {'commands/batch':>15}")
    for size in args.batch or [20, 200]:
        write_books()
        state.write_market((), changed=symbols[:size])
        evaluate_changed(state, lambda _s: None)  # warm the caches
        wall = cpu = 0.0
        batches = coins = 0
        issued = 0
        for _ in range(args.rounds):
            write_books()
            for start in range(0, len(symbols), size):
                changed = symbols[start:start + size]
                state.write_market((), changed=changed)  # as the feed's flush marks them
                before = commands()
                if profiler:
                    profiler.enable()
                w0, c0 = time.perf_counter(), time.process_time()
                evaluate_changed(state, lambda _s: None)
                wall += time.perf_counter() - w0
                cpu += time.process_time() - c0
                if profiler:
                    profiler.disable()
                issued += commands() - before - 1  # less the INFO itself
                batches += 1
                coins += len(changed)
        print(f"{size:>6} {wall / coins * 1e6:>14.1f} {cpu / coins * 1e6:>13.1f} {wall / batches * 1e6:>15.0f} "
              f"{issued / batches:>15.1f}")
    stats = state.redis.info("commandstats")
    busiest = sorted(stats.items(), key=lambda kv: -kv[1]["usec"])[:6]
    print("Redis, by time spent:", ", ".join(f"{name.removeprefix('cmdstat_')} {v['calls']} calls "
                                             f"{v['usec_per_call']:.0f} us/call" for name, v in busiest))
    if profiler:
        pstats.Stats(profiler).sort_stats(os.environ.get("SORT", "tottime")).print_stats(int(os.environ.get("LINES", "30")))


if __name__ == "__main__":
    main()
