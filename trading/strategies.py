"""Per-coin strategies (chosen in admin: `CoinStrategy`).

* **spread** — take a net spread the moment both books offer one after every fee; an open
  position closes on stop-loss or take-profit. What the engine always did.
* **convergence** — a premium bet with a hedged book: open when the premium is at least
  `entry_deviation_pct` away from its rolling mean (sell the venue that is dear *relative to its
  usual premium*, buy the other), close when it is back within `exit_deviation_pct`. Over its life
  a pair earns the premium's move back towards the mean, less the fees of both pairs.

* **inventory** — both venues hold coin and quote: each pair buys where the coin is cheap and
  sells where it is dear, from inventory, and is never closed by a reverse pair; the rebalancer
  (trading/rebalance.py) moves the coins back, and the minimum net spread includes the transfers'
  amortised cost (the measured one when higher than the configured estimate).

Either way, a stop-loss puts the coin in a cool-down (`GuardLimits.stop_loss_cooldown`) before any
re-entry, so a widening premium cannot churn a position through repeated stop-losses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

from .models import CoinStrategy

ZERO = Decimal(0)


@dataclass(frozen=True)
class Strategy:
    name: str
    entry_deviation_pct: Decimal = Decimal("0.5")
    exit_deviation_pct: Decimal = Decimal("0.1")
    lookback_seconds: int = 3600
    min_samples: int = 60
    transfer_cost_pct: Decimal = Decimal("0.05")


SPREAD = Strategy("spread")
_cache: tuple[float, dict[str, Strategy]] | None = None


def forget() -> None:
    global _cache
    _cache = None


def for_symbol(symbol: str, max_age: float = 5.0) -> Strategy:
    """The coin's strategy: its own row, else the "*" row, else spread (re-read every few seconds)."""
    global _cache
    if _cache is None or time.monotonic() - _cache[0] > max_age:
        rows = {r.symbol: Strategy(r.strategy, r.entry_deviation_pct, r.exit_deviation_pct, r.lookback_seconds, r.min_samples,
                                   r.transfer_cost_pct) for r in CoinStrategy.objects.all()}
        _cache = (time.monotonic(), rows)
    rows = _cache[1]
    return rows.get(symbol) or rows.get("*") or SPREAD


def rolling_mean(history: list[tuple[float, Decimal]], lookback_seconds: int, now: float | None = None,
                 ) -> tuple[Decimal, int] | None:
    """(mean premium %, samples) over the lookback window, or None without samples."""
    now = time.time() if now is None else now
    window = [value for ts, value in history if ts >= now - lookback_seconds]
    if not window:
        return None
    return sum(window, ZERO) / len(window), len(window)


def convergence_entry(strategy: Strategy, history, premium_pct: Decimal, now: float | None = None,
                      ) -> tuple[str, str, Decimal] | None:
    """(buy venue, sell venue, deviation) when the premium is far enough from its mean to open."""
    found = rolling_mean(history, strategy.lookback_seconds, now)
    if found is None or found[1] < strategy.min_samples:
        return None
    deviation = premium_pct - found[0]
    if deviation >= strategy.entry_deviation_pct:
        return "binance", "upbit", deviation  # Upbit dearer than usual: sell it there, buy on Binance
    if deviation <= -strategy.entry_deviation_pct:
        return "upbit", "binance", deviation  # Upbit cheaper than usual: buy it there, sell on Binance
    return None


def convergence_exit(strategy: Strategy, history, premium_pct: Decimal, position_side: str,
                     now: float | None = None) -> Decimal | None:
    """The deviation when an open convergence position has reverted enough to close, else None."""
    found = rolling_mean(history, strategy.lookback_seconds, now)
    if found is None:
        return None
    deviation = premium_pct - found[0]
    if position_side == "long_binance" and deviation <= strategy.exit_deviation_pct:
        return deviation
    if position_side == "long_upbit" and deviation >= -strategy.exit_deviation_pct:
        return deviation
    return None
