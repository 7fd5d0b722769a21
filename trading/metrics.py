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
