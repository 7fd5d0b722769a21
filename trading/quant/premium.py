"""Risk of what a market-neutral premium book holds: the premium of each coin, not its price.

A pair bought on one venue and sold on the other holds q coins long on one venue and q short on
the other. Its value moves with the premium p (in percent, Upbit over Binance x KRW/USDT):
d(value) = sign x E x dp / 100, with E = q x entry buy price in KRW and sign +1 for long_upbit (gains
when the premium widens), -1 for long_binance. Example: 0.01 BTC bought at 140,000,000 KRW is
E = 1,400,000 KRW; the premium moving 0.3 points moves it 4,200 KRW. (Exactly, E is q x the Binance
price in KRW, within the premium, a few percent, of the buy price; and the change also has a
p x d(coin price) term, second order at a few percent: both are left out.) So the series modelled
here is the premium in percentage points, and its changes in points; log(1 + p) would give nearly
the same numbers at these levels but not this direct link to KRW.

Samples are irregular (the engine samples a coin at most once a second, when it evaluates it), so
- volatility works on changes normalised to one second, z = dp / sqrt(dt) (points per sqrt(second));
- everything across coins or over a lag works on a grid: each series forward-filled at its median
  sampling step (the last known premium at each grid time).

Volatility over the holding horizon h (points):
    sigma_h = max(floor, sqrt(sigma_1s^2 x h x VR))
- sigma_1s: one-step-ahead forecast of z, GARCH(1,1) (arch) with at least GARCH_MIN_OBSERVATIONS
  changes, else RiskMetrics EWMA (lambda 0.94, seeded with the first squared change); points per
  sqrt(second). Zero means are assumed (as RiskMetrics does).
- VR: the variance ratio at a lag L = min(h, a quarter of the window): the premium's mean squared
  change over L per second, over its mean squared one-step change per second. A premium reverts to
  its mean, so its change over an hour is far smaller than sqrt(3600) one-second moves (VR < 1); a
  trending one is charged more (VR > 1); a random walk has VR = 1. It is pooled across coins (the
  median, see pooled_variance_ratio); with no coin's window long enough (L of one step) VR is 1:
  plain square root of time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from .portfolio import PortfolioOptimizer
from .risk import lag_steps
from .volatility import RISKMETRICS_LAMBDA, ewma_variance, garch_volatility

GARCH_MIN_OBSERVATIONS = 200
WEIGHT_MIN_OBSERVATIONS = 30

Samples = Sequence[tuple[float, Decimal | float]]


def arrays(samples: Samples) -> tuple[np.ndarray, np.ndarray]:
    """Times and values in time order, one value per time (the last one)."""
    if not samples:
        return np.empty(0), np.empty(0)
    ordered = sorted((float(t), float(v)) for t, v in samples)
    ts = np.array([t for t, _ in ordered])
    values = np.array([v for _, v in ordered])
    keep = np.append(np.diff(ts) > 0, True)  # of equal times, keep the last
    return ts[keep], values[keep]


def sampling_step(ts: np.ndarray) -> float:
    """Median gap between samples (seconds); 1.0 without two samples."""
    gaps = np.diff(ts)
    gaps = gaps[gaps > 0]
    return float(np.median(gaps)) if gaps.size else 1.0


def on_grid(ts: np.ndarray, values: np.ndarray, start: float, step: float, points: int) -> np.ndarray:
    """The last value known at start, start + step, ... (forward fill; the first value before it)."""
    grid = start + step * np.arange(points)
    index = np.searchsorted(ts, grid + step * 1e-6, side="right") - 1  # a grid time a rounding error early still sees its sample
    return values[np.clip(index, 0, ts.size - 1)]


def grid_path(samples: Samples) -> tuple[np.ndarray, float]:
    """One series on its own grid: (path, step)."""
    ts, values = arrays(samples)
    if ts.size < 2:
        return values, 1.0
    step = sampling_step(ts)
    points = int(math.floor((ts[-1] - ts[0]) / step + 1e-9)) + 1
    return on_grid(ts, values, ts[0], step, points), step


def common_grid(series: Mapping[str, Samples]) -> tuple[list[str], np.ndarray, float]:
    """Series over the window they all cover, on one grid: (symbols, matrix points x coins, step).
    The step is the median of the series' own steps; an empty matrix when they share no window."""
    parsed = {s: arrays(samples) for s, samples in series.items()}
    parsed = {s: a for s, a in parsed.items() if a[0].size >= 2}
    symbols = sorted(parsed)
    if not symbols:
        return [], np.empty((0, 0)), 1.0
    step = float(np.median([sampling_step(ts) for ts, _ in parsed.values()]))
    start = max(ts[0] for ts, _ in parsed.values())
    end = min(ts[-1] for ts, _ in parsed.values())
    if end < start:
        return symbols, np.empty((0, len(symbols))), step
    points = int(math.floor((end - start) / step + 1e-9)) + 1
    matrix = np.column_stack([on_grid(ts, values, start, step, points) for ts, values in (parsed[s] for s in symbols)])
    return symbols, matrix, step


def second_changes(samples: Samples) -> np.ndarray:
    """Changes normalised to one second: dp / sqrt(dt)."""
    ts, values = arrays(samples)
    if ts.size < 2:
        return np.empty(0)
    return np.diff(values) / np.sqrt(np.diff(ts))


@dataclass(frozen=True)
class PremiumVolatility:
    per_second: float  # one-step forecast, points per sqrt(second)
    method: str  # "garch" or "ewma"
    variance_ratio: float | None  # the coin's own VR at lag_seconds; None when the window is too short or flat
    lag_seconds: float
    observations: int  # one-step changes

    def over(self, horizon_seconds: float, variance_ratio: float, floor_pp: float) -> float:
        """Volatility over the horizon in points: sqrt(sigma_1s^2 x h x VR), at least floor_pp."""
        return max(math.sqrt(self.per_second ** 2 * horizon_seconds * max(variance_ratio, 0.0)), floor_pp)


def conditional_variance(z: np.ndarray, lam: float = RISKMETRICS_LAMBDA) -> tuple[float, str]:
    """One-step variance forecast of z: GARCH(1,1) with enough data (EWMA when it fails), else EWMA."""
    if z.size >= GARCH_MIN_OBSERVATIONS and np.any(z != 0):
        try:
            vol, _ = garch_volatility(z, scale=None, strict=True)  # an unconverged fit is not used
            if math.isfinite(vol) and vol > 0:
                return vol * vol, "garch"
        except Exception:  # noqa: BLE001 — a fit that fails or does not converge falls back to EWMA
            pass
    return ewma_variance(z, lam), "ewma"


def premium_volatility(samples: Samples, horizon_seconds: float) -> PremiumVolatility | None:
    """One coin's premium volatility model (see the module's docstring); None with fewer than
    three samples."""
    z = second_changes(samples)
    if z.size < 2:
        return None
    variance, method = conditional_variance(z)
    mean_square = float(np.mean(z * z))
    path, step = grid_path(samples)
    lag = lag_steps(path.size, step, horizon_seconds)
    ratio = None
    if lag >= 2 and mean_square > 0:
        changes = path[lag:] - path[:-lag]
        ratio = float(np.mean(changes * changes)) / (lag * step * mean_square)
    return PremiumVolatility(per_second=math.sqrt(max(variance, 0.0)), method=method, variance_ratio=ratio,
                             lag_seconds=lag * step, observations=int(z.size))


def pooled_variance_ratio(models: Mapping[str, PremiumVolatility]) -> float:
    """The median of the coins' own variance ratios (1 when none has one). How fast premiums revert
    is measured on a lag of a quarter of the window, from a handful of independent stretches: one
    coin's figure is noisy (about +-60 % for a random walk over an hour), while the reversion is
    largely a market-wide property (the same arbitrage closes every coin's premium). Pooling keeps
    that noise out of the coins' relative sizes, which then follow their volatility alone."""
    ratios = [m.variance_ratio for m in models.values() if m.variance_ratio is not None and math.isfinite(m.variance_ratio)]
    return float(np.median(ratios)) if ratios else 1.0


def premium_weights(series: Mapping[str, Samples], min_observations: int = WEIGHT_MIN_OBSERVATIONS) -> tuple[dict[str, float], dict]:
    """Long-only minimum-variance weights (Ledoit-Wolf shrunk) on the coins' premium changes, each
    divided by its own standard deviation: the cap already sizes each coin by 1 / its volatility,
    so the weights only spread the budget by how the premiums move together (on the raw changes a
    coin's volatility would be charged twice: cap ~ 1/sigma^3 for independent coins).

    Coins whose premium did not move in the shared window take the equal weight 1/n (they have no
    correlation to measure); with fewer than min_observations shared changes every coin does (the
    optimiser's inverse-variance fallback on unit-variance series). Weights sum to 1.
    """
    symbols = sorted(series)
    if not symbols:
        return {}, {"method": "none"}
    equal = {s: 1.0 / len(symbols) for s in symbols}
    if len(symbols) == 1:
        return equal, {"method": "single"}
    shared, matrix, _ = common_grid(series)
    if len(shared) != len(symbols) or matrix.shape[0] - 1 < min_observations:
        return equal, {"method": "equal", "observations": max(0, matrix.shape[0] - 1)}
    changes = np.diff(matrix, axis=0)
    sd = changes.std(axis=0)
    moving = [i for i in range(len(symbols)) if sd[i] > 0]
    if len(moving) < 2:
        return equal, {"method": "equal", "observations": int(changes.shape[0])}
    optimizer = PortfolioOptimizer(max_history=changes.shape[0], min_observations=min_observations)
    optimizer.add_returns_batch({symbols[i]: changes[:, i] / sd[i] for i in moving})
    inner = optimizer.get_optimal_weights([symbols[i] for i in moving])
    share = len(moving) / len(symbols)
    weights = dict(equal)
    weights.update({s: float(w) * share for s, w in inner.items()})
    return weights, {"method": "min_variance", "observations": int(changes.shape[0]), "shrinkage": optimizer.last_shrinkage}


def book_path(series: Mapping[str, Samples], exposures: Mapping[str, float]) -> tuple[np.ndarray, float, list[str]]:
    """The premium book's value path in KRW on a shared grid: sum of signed exposure x premium / 100
    (a constant off the true value, which VaR ignores). Returns (path, step, coins in it)."""
    held = {s: series[s] for s, e in exposures.items() if e and s in series and len(series[s]) >= 2}
    symbols, matrix, step = common_grid(held)
    if not symbols or matrix.shape[0] == 0:
        return np.empty(0), step, symbols
    signed = np.array([exposures[s] for s in symbols]) / 100.0
    return matrix @ signed, step, symbols
