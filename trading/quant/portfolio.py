"""Long-only minimum-variance weights on a shrunk covariance matrix."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.optimize import minimize


def ledoit_wolf(returns: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf (2004) shrinkage towards a scaled identity; returns (covariance, intensity)."""
    x = returns - returns.mean(axis=0)
    n, p = x.shape
    sample = x.T @ x / n
    mu = np.trace(sample) / p
    target = mu * np.eye(p)
    d2 = np.sum((sample - target) ** 2) / p
    b2 = sum(np.sum((np.outer(row, row) - sample) ** 2) for row in x) / (n * n * p)
    b2 = min(b2, d2)
    shrinkage = b2 / d2 if d2 > 0 else 1.0
    return shrinkage * target + (1 - shrinkage) * sample, float(shrinkage)


class PortfolioOptimizer:
    def __init__(self, max_history: int = 3600, min_observations: int = 20, shrink: bool = True):
        self.history: dict[str, deque] = {}
        self.max_history = max_history
        self.min_observations = min_observations
        self.shrink = shrink
        self.last_shrinkage: float | None = None

    def add_returns_batch(self, symbol_returns: Mapping[str, Sequence[float]]) -> None:
        for symbol, returns in symbol_returns.items():
            self.history.setdefault(symbol, deque(maxlen=self.max_history)).extend(float(r) for r in returns)

    def get_optimal_weights(self, symbols: Sequence[str]) -> dict[str, float]:
        """Weights >= 0 summing to 1. Symbols short of history share a fallback: inverse variance
        where any history exists, equal weights otherwise."""
        symbols = list(symbols)
        if not symbols:
            return {}
        n = min(len(self.history.get(s, ())) for s in symbols)
        if n < self.min_observations or len(symbols) == 1:
            return self._fallback(symbols)
        returns = np.column_stack([np.asarray(self.history[s])[-n:] for s in symbols])
        if self.shrink:
            cov, self.last_shrinkage = ledoit_wolf(returns)
        else:
            cov = np.cov(returns, rowvar=False, bias=True)
        weights = self._min_variance(cov)
        return dict(zip(symbols, weights, strict=True))

    @staticmethod
    def _min_variance(cov: np.ndarray) -> list[float]:
        p = cov.shape[0]
        start = np.full(p, 1.0 / p)
        scale = np.trace(cov) / p or 1.0
        result = minimize(
            lambda w: w @ (cov / scale) @ w, start, jac=lambda w: 2 * (cov / scale) @ w, method="SLSQP",
            bounds=[(0.0, 1.0)] * p, constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
            options={"ftol": 1e-12, "maxiter": 500},
        )
        w = np.clip(result.x if result.success else start, 0.0, None)
        return list(w / w.sum())

    def _fallback(self, symbols: list[str]) -> dict[str, float]:
        variances = []
        for s in symbols:
            h = np.asarray(self.history.get(s, ()), dtype=float)
            variances.append(h.var() if h.size >= 2 and h.var() > 0 else np.nan)
        v = np.asarray(variances)
        if np.all(np.isnan(v)):
            return {s: 1.0 / len(symbols) for s in symbols}
        inv = np.where(np.isnan(v), np.nanmean(1 / v), 1 / np.where(np.isnan(v), 1, v))
        inv = inv / inv.sum()
        return dict(zip(symbols, (float(x) for x in inv), strict=True))
