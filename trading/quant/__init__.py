"""Volatility, portfolio weights and risk metrics. Statistics run in float (numpy); sizes come out as Decimal."""

from .portfolio import PortfolioOptimizer
from .risk import QuantitativeRiskManager
from .volatility import VolatilityPredictor

__all__ = ["PortfolioOptimizer", "QuantitativeRiskManager", "VolatilityPredictor"]
