"""Risk metrics of a return or P&L series: VaR and CVaR at 95 % (historical and parametric),
volatility, max drawdown, Sharpe; and VaR over a horizon from a sampled value path."""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal

import numpy as np
from scipy.stats import norm

# Below this many changes the historical quantile rests on one or two points; the parametric
# figure is the one to use (see horizon_risk's "var_95").
MIN_HISTORICAL_OBSERVATIONS = 50


def var_cvar(changes: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """VaR and CVaR of a series of changes (returns, or P&L in any unit), losses as positive numbers.

    Historical: the (1 - confidence) quantile (numpy's linear interpolation) and the mean of the
    changes at or below it. Parametric (normal): -(mean + z sd) and -(mean - sd phi(z) / alpha),
    with the sample sd (ddof 1). A flat series gives zeros, never NaN.
    """
    r = np.asarray(changes, dtype=float)
    if r.size < 2:
        raise ValueError("VaR needs at least two changes")
    alpha = 1 - confidence
    mean, std = float(r.mean()), float(r.std(ddof=1))
    q = float(np.quantile(r, alpha))
    tail = r[r <= q]
    z = float(norm.ppf(alpha))
    return {
        "var_95": -q,
        "cvar_95": -float(tail.mean()) if tail.size else -q,
        "var_95_parametric": -(mean + z * std),
        "cvar_95_parametric": -(mean - std * float(norm.pdf(z)) / alpha),
        "volatility": std,
    }


def horizon_risk(path: Sequence[float], step_seconds: float, horizon_seconds: float, confidence: float = 0.95) -> dict | None:
    """VaR/CVaR of a value path (equally spaced, step_seconds apart) over horizon_seconds.

    Changes are taken over a lag L = min(horizon, a quarter of the window) (overlapping windows),
    so a mean-reverting path (a premium) is not charged the square root of time from its
    one-step noise; they are then scaled to the horizon by sqrt(horizon / L). Units are the path's
    (percentage points for a premium, KRW for a book or equity). "var_95" is the historical figure
    with at least MIN_HISTORICAL_OBSERVATIONS changes, the parametric one otherwise. None with
    fewer than three points.
    """
    v = np.asarray(path, dtype=float)
    if v.size < 3 or not step_seconds > 0:
        return None
    lag = lag_steps(v.size, step_seconds, horizon_seconds)
    changes = v[lag:] - v[:-lag]
    if changes.size < 2:
        return None
    scale = math.sqrt(horizon_seconds / (lag * step_seconds))
    metrics = {k: val * scale for k, val in var_cvar(changes, confidence).items()}
    historical = changes.size >= MIN_HISTORICAL_OBSERVATIONS
    return {
        "var_95_historical": metrics["var_95"],
        "cvar_95_historical": metrics["cvar_95"],
        "var_95_parametric": metrics["var_95_parametric"],
        "cvar_95_parametric": metrics["cvar_95_parametric"],
        "var_95": metrics["var_95"] if historical else metrics["var_95_parametric"],
        "cvar_95": metrics["cvar_95"] if historical else metrics["cvar_95_parametric"],
        "method": "historical" if historical else "parametric",
        "lag_seconds": lag * step_seconds,
        "observations": int(changes.size),
        "horizon_seconds": horizon_seconds,
    }


def lag_steps(points: int, step_seconds: float, horizon_seconds: float) -> int:
    """Steps in min(horizon, a quarter of the window), at least one."""
    return max(1, min(int(round(horizon_seconds / step_seconds)), (points - 1) // 4))


class QuantitativeRiskManager:
    def __init__(self, confidence: float = 0.95, periods_per_year: float = 365 * 24 * 3600):
        self.confidence = confidence
        self.periods_per_year = periods_per_year

    def calculate_risk_metrics(self, returns: Sequence[float]) -> dict[str, float]:
        """Losses are positive numbers: var_95 = 0.02 means a 2 % loss is exceeded 5 % of the time."""
        r = np.asarray(returns, dtype=float)
        metrics = var_cvar(r, self.confidence)
        mean, std = float(r.mean()), metrics["volatility"]
        equity = np.cumprod(1 + r)
        peaks = np.maximum.accumulate(np.concatenate(([1.0], equity)))[1:]
        metrics["max_drawdown"] = float(np.max(1 - equity / peaks))
        metrics["sharpe"] = mean / std * math.sqrt(self.periods_per_year) if std > 0 else 0.0
        return metrics

    def max_loss(self, total_balance, var_95: float):
        return total_balance * Decimal(repr(var_95))

    def breaker_should_trip(self, current_loss, total_balance, var_95: float) -> bool:
        """The circuit breaker's VaR rule: current_loss > total_balance * var_95."""
        return current_loss > self.max_loss(total_balance, var_95)
