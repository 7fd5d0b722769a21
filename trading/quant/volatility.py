"""Volatility: RiskMetrics EWMA updated per sample, GARCH(1,1) (via `arch`) refitted on a schedule."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal

import numpy as np

RISKMETRICS_LAMBDA = 0.94


def log_returns(prices: Sequence[float]) -> np.ndarray:
    p = np.asarray(prices, dtype=float)
    p = p[p > 0]
    return np.diff(np.log(p)) if p.size > 1 else np.empty(0)


def ewma_variance(returns: Sequence[float], lam: float = RISKMETRICS_LAMBDA, seed: float | None = None) -> float:
    """sigma2_t = lam * sigma2_{t-1} + (1 - lam) * r_{t-1}^2, seeded with the first squared return."""
    r = np.asarray(returns, dtype=float)
    if r.size == 0:
        return float("nan") if seed is None else seed
    var = r[0] ** 2 if seed is None else seed
    for x in r[1:] if seed is None else r:
        var = lam * var + (1 - lam) * x * x
    return float(var)


def ewma_update(variance: float | None, last_price: float | None, price: float, lam: float = RISKMETRICS_LAMBDA) -> float | None:
    """One EWMA step from the previous variance and price (None until two prices are known)."""
    if last_price is None or last_price <= 0 or price <= 0:
        return variance
    r = math.log(price / last_price)
    return r * r if variance is None else lam * variance + (1 - lam) * r * r


def garch_volatility(returns: Sequence[float], scale: float | None = 1000.0, *, strict: bool = False) -> tuple[float, dict[str, float]]:
    """One-step-ahead GARCH(1,1) volatility (per period) and the fitted parameters.

    Returns are scaled before fitting (arch's optimiser wants values of order 1) and the
    forecast is scaled back; scale=None uses 1 / (root mean square of the returns). strict: raise
    ValueError when the optimiser did not converge (instead of using its last point).
    """
    from arch import arch_model

    r = np.asarray(returns, dtype=float)
    if scale is None:
        rms = float(np.sqrt(np.mean(r * r))) if r.size else 0.0
        scale = 1.0 / rms if rms > 0 else 1.0
    r = r * scale
    result = arch_model(r, mean="Zero", vol="GARCH", p=1, q=1, rescale=False).fit(disp="off", show_warning=not strict)
    if strict and result.convergence_flag != 0:
        raise ValueError(f"GARCH fit did not converge (optimiser code {result.convergence_flag})")
    forecast = result.forecast(horizon=1, reindex=False).variance.values[-1, 0]
    return float(math.sqrt(forecast) / scale), {k: float(v) for k, v in result.params.items()}


class VolatilityPredictor:
    """Per-symbol volatility from recent prices, and a position size that targets a risk budget."""

    def __init__(self, lam: float = RISKMETRICS_LAMBDA, risk_budget: float = 0.002, min_observations: int = 30):
        self.lam = lam
        self.risk_budget = risk_budget  # loss at one volatility move, as a share of the balance
        self.min_observations = min_observations

    def predict_batch(self, recent_prices: Mapping[str, Sequence[float]], method: str = "ewma") -> dict[str, float]:
        """Per-period volatility for each symbol (NaN when there is too little history)."""
        out = {}
        for symbol, prices in recent_prices.items():
            r = log_returns(prices)
            if r.size < 2:
                out[symbol] = float("nan")
            elif method == "garch" and r.size >= self.min_observations:
                out[symbol] = garch_volatility(r)[0]
            else:
                out[symbol] = math.sqrt(ewma_variance(r, self.lam))
        return out

    def calculate_position_size(self, volatility: float, total_balance: Decimal, horizon_periods: int = 1) -> Decimal:
        """Notional whose one-sigma move over the horizon loses `risk_budget` of the balance."""
        if not volatility or math.isnan(volatility) or volatility <= 0:
            return Decimal(0)
        sigma = volatility * math.sqrt(horizon_periods)
        size = total_balance * Decimal(repr(self.risk_budget / sigma))
        return min(size, total_balance).quantize(Decimal(1))
