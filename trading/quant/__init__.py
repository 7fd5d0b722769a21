"""Risk of the premium book: volatility (EWMA/GARCH) and VaR/CVaR of each coin's premium, of the
positions held and of equity; weights across coins; the size cap (service.position_cap) and the
breaker's VaR budget. Statistics run in float (numpy); sizes come out as Decimal.

premium.py models the premium series, risk.py the VaR figures, service.py refits the model into
Redis and sizes; config.py holds the settings (RISK_BUDGET_KRW, RISK_HORIZON_SECONDS,
RISK_MIN_PREMIUM_VOL_PP)."""

from .portfolio import PortfolioOptimizer
from .risk import QuantitativeRiskManager
from .volatility import VolatilityPredictor

__all__ = ["PortfolioOptimizer", "QuantitativeRiskManager", "VolatilityPredictor"]
