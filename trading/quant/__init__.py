"""Risk of the premium book: volatility (EWMA/GARCH) and VaR/CVaR of each coin's premium, of the
positions held and of equity; weights across coins; the size cap (service.position_cap) and the
breaker's VaR budget. Statistics run in float (numpy); sizes come out as Decimal.

premium.py models the premium series, risk.py the VaR figures, service.py refits the model into
Redis and sizes; config.py holds the settings (RISK_BUDGET_KRW, RISK_HORIZON_SECONDS,
RISK_MIN_PREMIUM_VOL_PP)."""

import importlib

# numpy and scipy cost every process that imports the engine (a feed worker does, through the
# admin) tens of MB and seconds: the classes load on first use, not with the package.
_LAZY = {"PortfolioOptimizer": ".portfolio", "QuantitativeRiskManager": ".risk", "VolatilityPredictor": ".volatility"}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name], __name__), name)
