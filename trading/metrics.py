"""The live metrics record (`arbitrage:metrics:live`, docs/redis-keys.md), valued in KRW from current books."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from liveguard import guard as lg

from . import accounting, ledger
from .fields import money
from .models import Order, Pair, Position
from .state import MetricsRecord, StateManager


def figures(state: StateManager, fx: Decimal):
    """(valuation, today's PnL, total PnL) per the accounting model, at the current marks."""
    book = accounting.replay()
    marks = accounting.current_marks(state, fx, list(book.quantity))
    if accounting.value_flows(marks):
        book = accounting.replay()
    current = accounting.valuation(marks, book)
    today = accounting.period_pnl(current, fx, lg.start_of_trading_day())
    return current, today, current.pnl


def valuation(state: StateManager, fx: Decimal) -> tuple[Decimal, Decimal]:
    """(equity, available) in KRW: every asset at its own venue's mark; available is quote only."""
    current, _, _ = figures(state, fx)
    available = sum((amount * (fx if asset == "USDT" else 1) for (venue, asset), amount in ledger.balances().items()
                     if asset in ("KRW", "USDT")), Decimal(0))
    return money(current.equity), money(available)


def compute(state: StateManager, fx: Decimal) -> MetricsRecord:
    current, today, total = figures(state, fx)
    available = sum((amount * (fx if asset == "USDT" else 1) for (venue, asset), amount in ledger.balances().items()
                     if asset in ("KRW", "USDT")), Decimal(0))
    start = lg.start_of_trading_day()
    return MetricsRecord(
        total_balance=money(current.equity),
        available_balance=money(available),
        positions_count=Position.objects.count(),
        orders_count=Order.objects.filter(created_at__gte=start).count(),
        daily_loss=money(max(Decimal(0), -today.pnl)),
        total_loss=money(max(Decimal(0), -total)),
        trades_today=Pair.objects.filter(created_at__gte=start, quantity__gt=0).count(),
        timestamp=datetime.now(UTC),
        equity=money(current.equity), flows=money(current.flows), pnl_today=money(today.pnl), pnl_total=money(total),
        realized=money(current.realized), unrealized=money(current.unrealized),
    )


def rebalance_suggestions(state: StateManager, fx: Decimal, low_share: Decimal = Decimal("0.2")) -> list[dict]:
    """Where one venue holds less than low_share of an asset's KRW value across both, suggest a move.

    Coins are compared coin for coin; KRW on Upbit against USDT on Binance. Nothing is moved:
    transfers between venues are the operator's call.
    """
    held = ledger.balances()
    suggestions = []
    assets = {a for (_, a) in held if a not in ("KRW", "USDT")}
    pairs = [("quote", held.get(("upbit", "KRW"), Decimal(0)), held.get(("binance", "USDT"), Decimal(0)) * fx)]
    pairs += [(a, held.get(("upbit", a), Decimal(0)), held.get(("binance", a), Decimal(0))) for a in sorted(assets)]
    for asset, upbit, binance in pairs:
        total = upbit + binance
        if total <= 0:
            continue
        for venue, amount, other in (("upbit", upbit, "binance"), ("binance", binance, "upbit")):
            if amount / total < low_share:
                move = total / 2 - amount
                unit = "KRW" if asset == "quote" else asset
                suggestions.append({
                    "asset": asset, "low_venue": venue, "from_venue": other, "share": str(money(amount / total)),
                    "suggested_transfer": str(money(move)), "unit": unit,
                    "message": f"{venue} holds {amount / total:.0%} of {unit if asset != 'quote' else 'quote (KRW value)'}; "
                               f"move about {money(move)} {unit} from {other}",
                })
    state.set_rebalance(suggestions)
    return suggestions
