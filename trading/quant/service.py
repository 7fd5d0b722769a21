"""Refit the risk model from the sampled mid prices: volatility per coin, weights, and VaR."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np

from trading.state import StateManager

from .portfolio import PortfolioOptimizer
from .risk import QuantitativeRiskManager
from .volatility import VolatilityPredictor, log_returns

GARCH_MIN_OBSERVATIONS = 200
# The breaker compares a day's loss with the balance times VaR, so VaR is scaled to one day.
VAR_HORIZON_SECONDS = 86400


def refit(state: StateManager) -> dict:
    predictor = VolatilityPredictor()
    optimizer = PortfolioOptimizer(min_observations=30)
    series = {}
    for symbol in state.premium_symbols():
        samples = state.mid_history(symbol)
        if len(samples) >= 3:
            series[symbol] = samples
    vols, returns = {}, {}
    for symbol, samples in series.items():
        r = log_returns([float(p) for _, p in samples])
        returns[symbol] = r
        method = "garch" if r.size >= GARCH_MIN_OBSERVATIONS else "ewma"
        try:
            vol = predictor.predict_batch({symbol: [float(p) for _, p in samples]}, method=method)[symbol]
        except Exception:  # a GARCH fit that fails to converge falls back to EWMA
            vol = predictor.predict_batch({symbol: [float(p) for _, p in samples]})[symbol]
        if not math.isnan(vol):
            vols[symbol] = vol
    optimizer.add_returns_batch(returns)
    weights = optimizer.get_optimal_weights(list(vols)) if vols else {}
    var_95 = None
    usable = [r for r in returns.values() if r.size >= 30]
    if usable:
        n = min(r.size for r in usable)
        basket = np.mean([r[-n:] for r in usable], axis=0)
        period = _mean_period(series)
        one = QuantitativeRiskManager().calculate_risk_metrics(basket)["var_95"]
        var_95 = max(one, 0.0) * math.sqrt(VAR_HORIZON_SECONDS / period)
    state.set_risk_model(var_95, vols, weights)
    return {"vols": vols, "weights": weights, "var_95": var_95}


def _mean_period(series) -> float:
    gaps = [(s[-1][0] - s[0][0]) / (len(s) - 1) for s in series.values() if len(s) > 1]
    return max(float(np.mean(gaps)), 1e-3) if gaps else 1.0


def position_cap(volatility: float | None, weight: float | None, weighted_symbols: int, total_balance: Decimal | None,
                 horizon_seconds: int = 3600) -> Decimal | None:
    """adjusted_position = position_size(vol, balance) x weight, scaled so an equal weight leaves
    the volatility-targeted size unchanged; None without a model."""
    if not volatility or not weight or not total_balance or total_balance <= 0 or weighted_symbols <= 0:
        return None
    size = VolatilityPredictor().calculate_position_size(volatility, total_balance, horizon_seconds)
    return (size * Decimal(repr(weight)) * weighted_symbols).quantize(Decimal(1))


def sizing_cap(state: StateManager, symbol: str, total_balance: Decimal, horizon_seconds: int = 3600) -> Decimal | None:
    """position_cap() from the last refit stored in Redis."""
    model = state.risk_model()
    vol, weight = model.get(f"vol:{symbol}"), model.get(f"weight:{symbol}")
    count = len([k for k in model if k.startswith("weight:")])
    return position_cap(float(vol) if vol else None, float(weight) if weight else None, count, total_balance, horizon_seconds)
