"""The live metrics record (SPEC §4 `arbitrage:metrics:live`), valued in KRW from current books."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from liveguard import guard as lg

from . import ledger
from .fields import money
from .models import Order, Pair, Position
from .state import MetricsRecord, StateManager


def valuation(state: StateManager, fx: Decimal) -> tuple[Decimal, Decimal]:
    """(total, available) in KRW: every asset at its venue's mid; available is quote only."""
    total = available = Decimal(0)
    for (venue, asset), amount in ledger.balances().items():
        if asset == "KRW":
            value = amount
        elif asset == "USDT":
            value = amount * fx
        else:
            price = state.get_price(venue, asset)
            if price is None:
                continue
            value = amount * price.mid * (fx if venue == "binance" else 1)
        total += value
        if asset in ("KRW", "USDT"):
            available += value
    return money(total), money(available)


def compute(state: StateManager, fx: Decimal) -> MetricsRecord:
    total, available = valuation(state, fx)
    start = lg.start_of_trading_day()
    return MetricsRecord(
        total_balance=total,
        available_balance=available,
        positions_count=Position.objects.count(),
        orders_count=Order.objects.filter(created_at__gte=start).count(),
        daily_loss=money(lg.daily_loss()),
        total_loss=money(lg.total_loss()),
        trades_today=Pair.objects.filter(created_at__gte=start, quantity__gt=0).count(),
        timestamp=datetime.now(UTC),
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
