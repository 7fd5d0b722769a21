"""Refit the premium risk model from the sampled premiums, positions and equity; the quant size cap.

The model (refit every few minutes, kept an hour in arbitrage:risk):
- per coin, the premium's volatility over the holding horizon (points, see premium.py) and a weight;
- VaR/CVaR at 95 % of each coin's premium over the horizon (points, both directions), of the
  premium book held (KRW over one day) and of equity (KRW over one day, from
  arbitrage:equity:history when it has samples);
- the breaker's VaR budget in KRW over one day: equity VaR when equity is sampled, else the book's;
  none when neither is positive (the breaker's loss-percentage rule still applies).

The cap (position_cap): a coin may lose RISK_BUDGET_KRW on a one-sigma premium move over the
horizon at an equal weight:
    cap = RISK_BUDGET_KRW / (sigma_h / 100) x weight x n      (KRW, floored to 1 KRW)
with n the number of weighted coins, so an equal weight (1/n) leaves the volatility-targeted size
unchanged. A coin with twice the premium volatility gets half the size.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from decimal import ROUND_FLOOR, Decimal

from trading.state import StateManager

from . import config

log = logging.getLogger(__name__)

# The breaker compares a day's loss with this budget, so book and equity VaR are over one day.
VAR_HORIZON_SECONDS = 86400


def refit(state: StateManager, positions: Iterable | None = None) -> dict:
    """Refit from Redis (premium and equity samples) and the open positions (read from the database
    when not given: objects with symbol, side, quantity, entry_buy_price); store and return the model."""
    # Here, not at the top: the engine imports this module for position_cap, and numpy/scipy would
    # then load into every process that imports the engine (a feed worker, through the admin).
    from .premium import book_path, grid_path, pooled_variance_ratio, premium_volatility, premium_weights
    from .risk import horizon_risk

    horizon, floor = config.risk_horizon_seconds(), config.min_premium_vol_pp()
    series = {s: state.premium_history(s) for s in state.premium_symbols()}
    series = {s: samples for s, samples in series.items() if len(samples) >= 3}
    models = {s: premium_volatility(samples, horizon) for s, samples in series.items()}
    models = {s: m for s, m in models.items() if m is not None}
    ratio = pooled_variance_ratio(models)
    vols = {s: m.over(horizon, ratio, floor) for s, m in models.items()}
    weights, weighting = premium_weights({s: series[s] for s in models})

    coins = {}
    for symbol, model in models.items():
        path, step = grid_path(series[symbol])
        long = horizon_risk(path, step, horizon)  # a position that loses when the premium falls
        short = horizon_risk(-path, step, horizon)  # one that loses when it rises
        coins[symbol] = {
            "vol_pp": vols[symbol], "vol_pp_per_sqrt_s": model.per_second, "method": model.method,
            "variance_ratio": model.variance_ratio, "observations": model.observations, "weight": weights.get(symbol),
            "var_95_long_pp": long and long["var_95"], "cvar_95_long_pp": long and long["cvar_95"],
            "var_95_short_pp": short and short["var_95"], "cvar_95_short_pp": short and short["cvar_95"],
        }

    exposures = book_exposures(_open_positions() if positions is None else positions)
    path, step, modelled = book_path(series, exposures)
    book = horizon_risk(path, step, VAR_HORIZON_SECONDS)
    book_report = {"exposure_krw": exposures, "modelled": modelled,
                   "unmodelled": sorted(s for s, e in exposures.items() if e and s not in modelled), **(book or {})}

    equity_path, equity_step = grid_path(state.equity_history())
    equity = horizon_risk(equity_path, equity_step, VAR_HORIZON_SECONDS)

    var_krw, source = None, None
    for name, figures in (("equity", equity), ("book", book)):
        # Under 1 KRW is rounding (a flat or fully hedged book), not a budget.
        if figures and math.isfinite(figures["var_95"]) and figures["var_95"] >= 1.0:
            var_krw, source = figures["var_95"], name
            break
    report = {"horizon_seconds": horizon, "budget_krw": str(config.risk_budget_krw()), "floor_pp": floor, "variance_ratio": ratio,
              "weighting": weighting, "coins": coins, "book": book_report, "equity": equity,
              "var_95_krw": var_krw, "var_source": source}
    state.set_risk_model(var_krw, vols, weights, horizon_seconds=horizon, var_source=source,
                         book_var_krw=book["var_95"] if book else None,
                         equity_var_krw=equity["var_95"] if equity else None, report=report)
    return {"vols": vols, "weights": weights, "variance_ratio": ratio, "var_95_krw": var_krw, "var_source": source,
            "book": book, "equity": equity, "coins": coins}


def book_exposures(positions: Iterable) -> dict[str, float]:
    """Signed KRW exposure per coin (a premium move of dp points changes its value by exposure x dp / 100):
    quantity x entry buy price, + for long_upbit (gains when the premium widens), - for long_binance."""
    out: dict[str, float] = {}
    for p in positions:
        notional = float(p.quantity) * float(p.entry_buy_price)
        if notional:
            out[p.symbol] = out.get(p.symbol, 0.0) + (notional if p.side == "long_upbit" else -notional)
    return out


def _open_positions() -> list:
    from django.db import DatabaseError

    from trading.models import Position

    try:
        return list(Position.objects.filter(quantity__gt=0))
    except DatabaseError:
        log.warning("risk refit: positions unreadable, the book's VaR is left out", exc_info=True)
        return []


def position_cap(volatility: float | None, weight: float | None, weighted_symbols: int, total_balance: Decimal | None = None,
                 *, budget_krw: Decimal | None = None, floor_pp: float | None = None) -> Decimal | None:
    """The quant cap in KRW: budget / (sigma_h / 100) x weight x n (see the module's docstring).

    volatility: the coin's premium volatility over the horizon, in points; weight: its portfolio
    weight; weighted_symbols: n. Edge cases, all monotone (a smaller weight or a larger volatility
    never gives a larger cap):
    - no model for the coin (neither a volatility nor a weight): None, no cap;
    - weight 0 (or below): Decimal(0), the coin gets no size; a tiny weight floors to 0 as well;
    - a weight without a volatility, or a volatility under the floor: the floor volatility;
    - a volatility without a weight: the equal weight (factor 1).
    Never above a positive total_balance.
    """
    has_vol = volatility is not None and math.isfinite(volatility)
    has_weight = weight is not None and math.isfinite(weight)
    if not has_vol and not has_weight:
        return None
    if has_weight and weight <= 0:
        return Decimal(0)
    factor = Decimal(repr(float(weight))) * max(int(weighted_symbols), 1) if has_weight else Decimal(1)
    floor = config.min_premium_vol_pp() if floor_pp is None else floor_pp
    sigma = max(float(volatility) if has_vol else 0.0, floor)
    budget = config.risk_budget_krw() if budget_krw is None else budget_krw
    # In Decimal from the shortest reprs, so 3,000 / 0.008 x 0.3 x 3 is 337,500, not 337,499.99...
    cap = budget * 100 * factor / Decimal(repr(sigma))
    if total_balance is not None and total_balance > 0:
        cap = min(cap, total_balance)
    return cap.to_integral_value(rounding=ROUND_FLOOR)


def sizing_cap(state: StateManager, symbol: str, total_balance: Decimal | None = None) -> Decimal | None:
    """position_cap() from the last refit stored in Redis."""
    model = state.risk_model()
    return position_cap(_float(model.get(f"vol:{symbol}")), _float(model.get(f"weight:{symbol}")),
                        int(model.get("weighted") or 0), total_balance)


def _float(raw: str | None) -> float | None:
    return float(raw) if raw else None
