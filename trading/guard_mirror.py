"""What the trading core tells LiveGuard about its own records (connected by trading/wiring.py).

liveguard never reads trading's models: the counters it mirrors into Redis after a flush, the
ledger's quote it reserves against and the coins a control may name are answered here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal

from django.conf import settings
from django.db.models import Count, Q

from liveguard.clock import start_of_trading_day, start_of_trading_hour
from liveguard.ports import DatabaseCounts

from . import ledger
from .models import Pair, Position


def counted_pairs(since: datetime):
    """The pairs that hold a trade slot, created since `since`.

    A pair counts when it was sent: every opening pair (closing pairs take no slot) of the current
    mode, except a failed one with nothing filled: its reservation was given back before or
    without sending (the executor raised, or no leg filled). Pending pairs are in flight and count.
    This is exactly what the Redis counters hold: reservations taken less reservations released.
    """
    mode = "live" if settings.LIVE_MODE else "paper"
    return (Pair.objects.filter(kind=Pair.Kind.OPEN, mode=mode, created_at__gte=since)
            .exclude(state=Pair.State.FAILED, quantity=0))


def trades_from_database(now: datetime | None = None) -> tuple[int, int]:
    """(this hour's, this trading day's) pairs by `counted_pairs`, hours and days in TRADING_DAY_TZ."""
    now = now or datetime.now(UTC)
    hour_start = start_of_trading_hour(now)
    counts = counted_pairs(start_of_trading_day(now)).aggregate(
        day=Count("pk"), hour=Count("pk", filter=Q(created_at__gte=hour_start)))
    return counts["hour"] or 0, counts["day"] or 0


def exposure_from_database() -> dict[str, int]:
    """Each coin's exposure in whole KRW, rounded up: the position's entry notional (engine.sync_exposure)."""
    return {p.symbol: int((p.entry_buy_price * p.quantity).to_integral_value(rounding=ROUND_CEILING))
            for p in Position.objects.all()}


def database_counts(now: datetime) -> DatabaseCounts:
    """The guard's counters as the database has them: what Redis is rebuilt from."""
    trades_hour, trades_day = trades_from_database(now)
    return DatabaseCounts(trades_hour, trades_day, exposure_from_database())


def quote_balance(venue: str) -> Decimal:
    """The ledger's balance of the venue's quote currency (KRW on Upbit, USDT on Binance)."""
    return ledger.balance(venue, ledger.QUOTE[venue])


def known_symbol(state, symbol: str) -> bool:
    """A coin the feeds quote now or one the system has traded."""
    return symbol in state.premium_symbols() or Pair.objects.filter(symbol=symbol).exists()
