"""Exchange trading rules: Upbit's KRW tick table and Binance's symbol filters."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

# Upbit KRW market tick table (docs/krw-market-info, policy of 2025-07-31), lowest bound first.
_UPBIT_KRW_TICKS: tuple[tuple[Decimal, Decimal], ...] = tuple(
    (Decimal(lower), Decimal(tick))
    for lower, tick in (
        ("1000000", "1000"),
        ("500000", "500"),
        ("100000", "100"),
        ("50000", "50"),
        ("10000", "10"),
        ("5000", "5"),
        ("100", "1"),
        ("10", "0.1"),
        ("1", "0.01"),
        ("0.1", "0.001"),
        ("0.01", "0.0001"),
        ("0.001", "0.00001"),
        ("0.0001", "0.000001"),
        ("0.00001", "0.0000001"),
    )
)
_UPBIT_MIN_TICK = Decimal("0.00000001")
# USDT/KRW and USDC/KRW trade on 0.5 KRW in the 1,000-10,000 band (changelog 2025-03-21).
_UPBIT_STABLECOIN_MARKETS = frozenset({"KRW-USDT", "KRW-USDC"})
UPBIT_MIN_ORDER_KRW = Decimal("5000")
UPBIT_VOLUME_STEP = Decimal("0.00000001")


def upbit_krw_tick(price: Decimal, market: str = "") -> Decimal:
    """Return the tick size Upbit applies to a KRW-market price."""
    if market in _UPBIT_STABLECOIN_MARKETS and Decimal("1000") <= price < Decimal("10000"):
        return Decimal("0.5")
    for lower, tick in _UPBIT_KRW_TICKS:
        if price >= lower:
            return tick
    return _UPBIT_MIN_TICK


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Round down to a multiple of step (a bid price, a quantity to sell)."""
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


def ceil_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Round up to a multiple of step (an ask price)."""
    return (value / step).to_integral_value(rounding=ROUND_CEILING) * step


def is_multiple(value: Decimal, step: Decimal) -> bool:
    return step == 0 or value % step == 0


@dataclass(frozen=True, slots=True)
class BinanceFilters:
    """PRICE_FILTER, LOT_SIZE and NOTIONAL of one symbol; a zero bound is disabled."""

    tick_size: Decimal
    step_size: Decimal
    min_price: Decimal = Decimal("0.01")
    max_price: Decimal = Decimal("1000000")
    min_qty: Decimal = Decimal("0")
    max_qty: Decimal = Decimal("9000000")
    min_notional: Decimal = Decimal("5")
    max_notional: Decimal = Decimal("9000000")

    @classmethod
    def from_exchange_info(cls, filters: list[dict]) -> BinanceFilters:
        by_type = {f["filterType"]: f for f in filters}
        price = by_type.get("PRICE_FILTER", {})
        lot = by_type.get("LOT_SIZE", {})
        notional = by_type.get("NOTIONAL") or by_type.get("MIN_NOTIONAL") or {}
        return cls(
            tick_size=Decimal(price.get("tickSize", "0")),
            step_size=Decimal(lot.get("stepSize", "0")),
            min_price=Decimal(price.get("minPrice", "0")),
            max_price=Decimal(price.get("maxPrice", "0")),
            min_qty=Decimal(lot.get("minQty", "0")),
            max_qty=Decimal(lot.get("maxQty", "0")),
            min_notional=Decimal(notional.get("minNotional", "0")),
            max_notional=Decimal(notional.get("maxNotional", "0")),
        )

    def to_exchange_info(self) -> list[dict]:
        def fmt(d: Decimal) -> str:
            return f"{d:.8f}"

        return [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": fmt(self.min_price),
                "maxPrice": fmt(self.max_price),
                "tickSize": fmt(self.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": fmt(self.min_qty),
                "maxQty": fmt(self.max_qty),
                "stepSize": fmt(self.step_size),
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": fmt(self.min_notional),
                "applyMinToMarket": True,
                "maxNotional": fmt(self.max_notional),
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ]

    def price_error(self, price: Decimal) -> str | None:
        """Return the failing filter's name for a limit price, or None."""
        if self.min_price and price < self.min_price:
            return "PRICE_FILTER"
        if self.max_price and price > self.max_price:
            return "PRICE_FILTER"
        if self.tick_size and not is_multiple(price, self.tick_size):
            return "PRICE_FILTER"
        return None

    def quantity_error(self, quantity: Decimal) -> str | None:
        if self.min_qty and quantity < self.min_qty:
            return "LOT_SIZE"
        if self.max_qty and quantity > self.max_qty:
            return "LOT_SIZE"
        if self.step_size and not is_multiple(quantity, self.step_size):
            return "LOT_SIZE"
        return None

    def notional_error(self, notional: Decimal) -> str | None:
        if self.min_notional and notional < self.min_notional:
            return "NOTIONAL"
        if self.max_notional and notional > self.max_notional:
            return "NOTIONAL"
        return None
