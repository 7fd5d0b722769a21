"""Risk metrics of a return series: VaR and CVaR at 95 %, volatility, max drawdown, Sharpe."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import norm


class QuantitativeRiskManager:
    def __init__(self, confidence: float = 0.95, periods_per_year: float = 365 * 24 * 3600):
        self.confidence = confidence
        self.periods_per_year = periods_per_year

    def calculate_risk_metrics(self, returns: Sequence[float]) -> dict[str, float]:
        """Losses are positive numbers: var_95 = 0.02 means a 2 % loss is exceeded 5 % of the time."""
        r = np.asarray(returns, dtype=float)
        if r.size < 2:
            raise ValueError("risk metrics need at least two returns")
        alpha = 1 - self.confidence
        mean, std = float(r.mean()), float(r.std(ddof=1))
        var_hist = -float(np.quantile(r, alpha))
        tail = r[r <= -var_hist]
        cvar_hist = -float(tail.mean()) if tail.size else var_hist
        z = norm.ppf(alpha)
        var_param = -(mean + z * std)
        cvar_param = -(mean - std * norm.pdf(z) / alpha)
        equity = np.cumprod(1 + r)
        peaks = np.maximum.accumulate(np.concatenate(([1.0], equity)))[1:]
        max_drawdown = float(np.max(1 - equity / peaks))
        sharpe = mean / std * math.sqrt(self.periods_per_year) if std > 0 else 0.0
        return {
            "var_95": var_hist,
            "cvar_95": cvar_hist,
            "var_95_parametric": var_param,
            "cvar_95_parametric": cvar_param,
            "volatility": std,
            "max_drawdown": max_drawdown,
            "sharpe": sharpe,
        }

    def max_loss(self, total_balance, var_95: float):
        from decimal import Decimal

        return total_balance * Decimal(repr(var_95))

    def breaker_should_trip(self, current_loss, total_balance, var_95: float) -> bool:
        """The circuit breaker's VaR rule: current_loss > total_balance * var_95."""
        return current_loss > self.max_loss(total_balance, var_95)
