"""What both processes of the soak share: paths, the fault targets, the scratch limits, small helpers."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

ROOT = Path(settings.BASE_DIR)
PY = sys.executable
BIN = Path(PY).parent
LIVE_CONFIRM = "I understand this sends real orders"
DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432/postgres"

# Fault targets: (dialect, method, path, what it is, weight).
ENDPOINTS = [
    ("binance", "POST", "/api/v3/order", "entry", 9),
    ("upbit", "POST", "/v1/orders", "entry", 9),
    ("binance", "GET", "/api/v3/order", "lookup", 5),
    ("binance", "GET", "/api/v3/myTrades", "lookup", 3),
    ("upbit", "GET", "/v1/order", "lookup", 6),
    ("binance", "DELETE", "/api/v3/order", "cancel", 1),
    ("upbit", "DELETE", "/v1/order", "cancel", 1),
    ("binance", "GET", "/api/v3/account", "accounts", 1),
    ("upbit", "GET", "/v1/accounts", "accounts", 1),
]
RARE_GAP = {"accounts": 150.0, "cancel": 60.0}  # seconds between faults on rarely called endpoints
KINDS = ["refuse_429", "refuse_418", "unavailable_before", "timeout_before", "delay_after", "error_5xx_after",
         "html_after", "reset_before", "reset_after"]
# Limits of the scratch database: the soak is about the order lifecycle, not about the guard's
# market checks, so pairs must keep flowing on a loaded 2-core machine. A pair is at most 1 % of
# the sell venue's coin inventory (a few million KRW); a coin's exposure may reach 40 M KRW.
LIMITS = dict(max_position_size=Decimal("40000000"), max_total_exposure=Decimal("1e12"), stop_loss_cooldown=5,
              max_inventory_pct=Decimal("1"), max_trades_per_hour=10**6,
              max_trades_per_day=10**7, max_daily_loss=Decimal("1e12"), max_total_loss=Decimal("1e12"),
              circuit_breaker_threshold_pct=Decimal("100"), max_slippage_pct=Decimal("1"), max_quote_age_ms=3000,
              max_quote_skew_ms=2500, max_fx_age_ms=10000, fx_jump_pct=Decimal("5"), min_spread_pct=Decimal("0.3"),
              stop_loss_pct=Decimal("5"), take_profit_pct=Decimal("0.5"), block_market_warnings=False)
INVENTORY_KRW = 400_000_000  # each coin, on each venue
KRW, USDT = Decimal("20000000000"), Decimal("15000000")



def say(out, text: str) -> None:
    out.write(text)
    out.flush()


def parse_coins(raw) -> list[str]:
    """--coins: how many of the venue's coins (the first N), or a comma-separated list."""
    from marketdata.venue.market import DEFAULT_COINS

    raw = str(raw).strip()
    known = [c.symbol for c in DEFAULT_COINS]
    if raw.isdigit():
        return known[: max(1, min(int(raw), len(known)))]
    coins = [c.strip().upper() for c in raw.split(",") if c.strip()]
    unknown = [c for c in coins if c not in known]
    if unknown or not coins:
        raise CommandError(f"--coins: unknown {', '.join(unknown) or 'list'}; the venue lists {', '.join(known)}")
    return coins



def raise_interrupt(*_args):
    raise KeyboardInterrupt
