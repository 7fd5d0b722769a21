"""Settings of the premium risk model: a Django setting of the same name wins, then the environment,
then the default here. Read at each call (they are cheap), so an override takes effect at once.

RISK_BUDGET_KRW (default 3000)
    KRW a coin may lose on a one-sigma premium move over the holding horizon, at an equal
    portfolio weight. The quant cap is this budget divided by the coin's premium volatility over
    the horizon: at 0.3 percentage points an hour, 3,000 / 0.003 = 1,000,000 KRW (the default
    position limit); a coin whose premium moves 0.6 points gets 500,000 KRW. In the simulated demo
    market (premiums reverting with a ~14 s half-life, jumps of 0.6-2 points every ~90 s) a refit
    measures 1-2 points an hour: caps of about 150,000-300,000 KRW, under the 1,000,000 KRW limit.
RISK_HORIZON_SECONDS (default 3600)
    The holding horizon the premium volatility is measured over.
RISK_MIN_PREMIUM_VOL_PP (default 0.05)
    Floor on a coin's premium volatility over the horizon, in percentage points: a premium that
    has not moved in the window (or a coin with a weight but no volatility) still gets a finite cap,
    budget / floor (6,000,000 KRW at the defaults).
"""

from __future__ import annotations

from decimal import Decimal

from arbproject.env import env_decimal, env_float, env_int

DEFAULT_RISK_BUDGET_KRW = "3000"
DEFAULT_RISK_HORIZON_SECONDS = 3600
DEFAULT_MIN_PREMIUM_VOL_PP = 0.05


def _django(name: str):
    try:
        from django.conf import settings

        return getattr(settings, name, None) if settings.configured else None
    except Exception:  # settings not importable or not configured (a script using the module alone)
        return None


def risk_budget_krw() -> Decimal:
    value = _django("RISK_BUDGET_KRW")
    budget = Decimal(str(value)) if value is not None else env_decimal("RISK_BUDGET_KRW", DEFAULT_RISK_BUDGET_KRW)
    if budget <= 0:
        raise ValueError(f"RISK_BUDGET_KRW={budget} must be positive")
    return budget


def risk_horizon_seconds() -> int:
    value = _django("RISK_HORIZON_SECONDS")
    return max(1, int(value) if value is not None else env_int("RISK_HORIZON_SECONDS", DEFAULT_RISK_HORIZON_SECONDS, minimum=1))


def min_premium_vol_pp() -> float:
    value = _django("RISK_MIN_PREMIUM_VOL_PP")
    floor = float(value) if value is not None else env_float("RISK_MIN_PREMIUM_VOL_PP", DEFAULT_MIN_PREMIUM_VOL_PP)
    if not floor > 0:
        raise ValueError(f"RISK_MIN_PREMIUM_VOL_PP={floor} must be positive")
    return floor
