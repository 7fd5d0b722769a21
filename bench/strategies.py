"""Both strategies over the same seeded market: what each earns, pays and risks.

    .venv/bin/python bench/strategies.py --seed 7 --coins 5 --span 3600

The venue's market model (correlated fair prices, a mean-reverting Upbit premium with jumps, books
on each venue's tick and lot rules) is stepped one simulated second at a time; after each step its
books are written to a private Redis as the feeds would write them, every coin is evaluated by the
engine in paper mode (the real guard, the real pair lifecycle, the real ledger on a scratch SQLite
database), and `check_positions` runs the exits. The same seed gives both strategies the same
market, and both start from the same balances (every coin funded before the first step). Equity
is valued per docs/ACCOUNTING.md at the model's mids. The start balances carry the market's moves
whatever the strategy does, so the table shows the equity PnL, what holding the start balances
alone made (the same for both), and the difference — what trading added — whose largest fall
from a peak is the drawdown shown.

Time: the strategy layer's clock (its rolling-mean window) and the premium history follow the
simulated clock; quote ages are real (every book is written just before its evaluation).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._harness import model_market, start_redis, stop  # noqa: E402


def run(strategy: str, seed: int, coins: int, span: int, redis_url: str) -> dict:
    from datetime import UTC, datetime

    from django.core.management import call_command

    from liveguard.models import GuardLimits
    from marketdata.venue.market import MarketModel, make_coins
    from trading import accounting, engine, exits, ledger, strategies
    from trading.models import CoinStrategy, Pair
    from trading.state import StateManager

    call_command("flush", interactive=False, verbosity=0)
    state = StateManager.from_url(redis_url)
    state.redis.flushdb()
    engine.forget_limits()
    strategies.forget()
    limits = GuardLimits.load()
    limits.max_trades_per_hour = limits.max_trades_per_day = 10**6
    limits.max_total_exposure = Decimal("1e12")
    limits.save()
    transfers = None
    if strategy == "inventory":
        from liveguard.models import TransferLimits
        from trading.paper import PaperTransfers
        from trading.rebalance import rebalance
        from trading.transfers import TransferService

        t_limits = TransferLimits.load()
        t_limits.withdrawals_enabled, t_limits.rebalance_below_pct = True, Decimal("48")
        t_limits.max_transfer_krw = t_limits.max_daily_transfer_krw = Decimal("1e12")
        t_limits.save()

        def paper_mark(venue, asset):
            c = model.coins[asset]
            bids, asks = (c.upbit_bids, c.upbit_asks) if venue == "upbit" else (c.binance_bids, c.binance_asks)
            mid = (bids[0][0] + asks[0][0]) / 2
            return mid if venue == "upbit" else mid * Decimal(str(round(model.usdt_krw, 2)))

        transfers = TransferService(state, PaperTransfers.pair(paper_mark, fee_krw=Decimal("3000"), delay_s=120,
                                                               clock=lambda: clock["now"]))
    CoinStrategy.objects.create(symbol="*", strategy=strategy, transfer_cost_pct=Decimal("0.05"), entry_deviation_pct=Decimal("0.5"),
                                exit_deviation_pct=Decimal("0.1"), lookback_seconds=900, min_samples=120)
    model = MarketModel(make_coins(coins), seed=seed)
    symbols = [c for c in model.coins if c != "BNB"][:coins]
    clock = {"now": time.time()}
    strategies.time = type("SimClock", (), {"time": staticmethod(lambda: clock["now"]),  # the strategy layer's clock
                                            "monotonic": staticmethod(time.monotonic)})
    peak, max_drawdown, pnl_series = None, Decimal(0), []
    started = time.monotonic()
    for second in range(span):
        model.step(1.0)
        clock["now"] += 1.0
        prices, books, fx = model_market(model, symbols, datetime.now(UTC))
        for symbol in symbols:
            filters = model.coins[symbol].coin.filters
            state.set_rules("binance", symbol, {"step_size": str(filters.step_size), "tick_size": str(filters.tick_size),
                                                "min_notional": "5"})
        usdt_bid, usdt_ask = fx.bid, fx.ask
        state.write_market(prices, books, [fx])
        if second == 0:  # fund every coin before anything trades, so both strategies hold the same start
            for symbol in symbols:
                c = model.coins[symbol]
                engine.ensure_paper_funds(state, symbol, (c.upbit_bids[0][0] + c.upbit_asks[0][0]) / 2,
                                          (c.binance_bids[0][0] + c.binance_asks[0][0]) / 2, (usdt_bid + usdt_ask) / 2)
            start = dict(ledger.balances())
            start_value = None
        for symbol in symbols:
            engine.evaluate_symbol(symbol, state=state)
            record = state.get_premium(symbol)
            if record is not None:  # the premium history on the simulated clock
                state.redis.zadd(f"arbitrage:premium:history:{symbol}", {f"{clock['now']}:{record.premium_pct}": clock["now"]})
        exits.check_positions(state)
        if transfers is not None and second % 30 == 0:
            marks_now = accounting.current_marks(state, (usdt_bid + usdt_ask) / 2,
                                                 [(v, a) for v in ("upbit", "binance") for a in symbols])
            rebalance(state, transfers, marks_now)
        if second % 10 == 0 or second == span - 1:
            marks = accounting.current_marks(state, (usdt_bid + usdt_ask) / 2, [(v, a) for v in ("upbit", "binance") for a in symbols])
            v = accounting.valuation(marks)
            held = sum((amount * (marks.of(*key) or 0) for key, amount in start.items()), Decimal(0))
            start_value = held if start_value is None else start_value
            hold_pnl = held - start_value  # what the start balances alone did over the same span
            edge = v.pnl - hold_pnl  # what trading added to (or took from) just holding
            pnl_series.append((v.pnl, hold_pnl, edge))
            peak = edge if peak is None or edge > peak else peak
            max_drawdown = max(max_drawdown, peak - edge)
    if transfers is not None:
        transfers.poll()
    from trading.models import Transfer

    moved = list(Transfer.objects.exclude(stage=Transfer.Stage.FAILED))
    transfer_cost = sum((t.fee * (accounting.current_marks(state, (usdt_bid + usdt_ask) / 2, [(t.from_venue, t.asset)])
                                  .of(t.from_venue, t.asset) or 0) for t in moved), Decimal(0))
    pairs = list(Pair.objects.filter(stage=Pair.Stage.CLOSED, quantity__gt=0))
    parts = accounting.pair_components(pairs)
    final = pnl_series[-1] if pnl_series else (Decimal(0),) * 3
    return {
        "strategy": strategy, "pairs": len(pairs), "opens": sum(p.kind == "open" for p in pairs),
        "closes": sum(p.kind == "close" for p in pairs), "gross_spread": parts["spread_captured"],
        "slippage": parts["slippage"] + parts["hedges"], "fees": parts["fees"],
        "trading_net": sum(parts.values(), Decimal(0)), "equity_pnl": final[0], "hold_pnl": final[1],
        "vs_hold": final[2], "max_drawdown": max_drawdown, "transfers": len(moved), "transfer_cost": transfer_cost,
        "seconds": time.monotonic() - started,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--coins", type=int, default=5)
    parser.add_argument("--span", type=int, default=3600, help="simulated seconds")
    parser.add_argument("--strategy", action="append", choices=["spread", "convergence", "inventory"])
    args = parser.parse_args()
    redis_server, redis_url = start_redis()
    db = Path(tempfile.mkdtemp(prefix="kimp-bench-strategies-")) / "bench.sqlite3"
    os.environ.update(REDIS_URL=redis_url, DATABASE_URL=f"sqlite:///{db}", DJANGO_SETTINGS_MODULE="arbproject.settings",
                      LOG_LEVEL="ERROR", PAPER_START_KRW="100000000", PAPER_START_USDT="70000",
                      PAPER_START_COIN_KRW="10000000")
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        print(f"seed {args.seed}, {args.coins} coins, {args.span} simulated seconds; KRW")
        print(f"{'strategy':<12} {'pairs':>6} {'opens':>6} {'closes':>6} {'gross spread':>14} {'slippage':>11} "
              f"{'fees':>11} {'trading net':>13} {'transfers':>9} {'xfer cost':>10} {'equity PnL':>13} {'holding':>13} "
              f"{'vs holding':>11} {'max drawdown':>13} {'run s':>7}")
        for strategy in args.strategy or ["spread", "convergence", "inventory"]:
            r = run(strategy, args.seed, args.coins, args.span, redis_url)
            print(f"{r['strategy']:<12} {r['pairs']:>6} {r['opens']:>6} {r['closes']:>6} {r['gross_spread']:>14,.0f} "
                  f"{r['slippage']:>11,.0f} {r['fees']:>11,.0f} {r['trading_net']:>13,.0f} {r['transfers']:>9} "
                  f"{r['transfer_cost']:>10,.0f} {r['equity_pnl']:>13,.0f} "
                  f"{r['hold_pnl']:>13,.0f} {r['vs_hold']:>11,.0f} {r['max_drawdown']:>13,.0f} {r['seconds']:>7.1f}")
    finally:
        stop(redis_server)


if __name__ == "__main__":
    main()
