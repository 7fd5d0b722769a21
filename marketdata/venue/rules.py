"""The venue's own market rules: Upbit's KRW tick table and order minimum, Binance's symbol filters,
both exchanges' trading fees.

Written from the exchanges' documentation (summarised in docs/venue.md, *Market rules*, and the
recorded fixtures in tests/fixtures), deliberately NOT imported from ``marketdata/rules.py``, which the adapters use: the venue and
the adapters each hold their own copy, and tests/marketdata/test_venue_rules.py checks that the two
agree on a grid of prices, so that a wrong rule in one is caught by the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

# --- Upbit (docs/venue.md, Market rules) ------------------------------------------------------
# KRW market tick table, docs/krw-market-info, policy of 2025-07-31: a price below `below` (and at
# or above the previous row's bound) trades on `tick`. From 2,000,000 KRW up the tick stays 1,000.
_KRW_TICK_FROM_100: tuple[tuple[Decimal, Decimal], ...] = (
    (Decimal(1_000), Decimal(1)),  # 100 - 1,000
    (Decimal(5_000), Decimal(1)),  # 1,000 - 5,000
    (Decimal(10_000), Decimal(5)),
    (Decimal(50_000), Decimal(10)),
    (Decimal(100_000), Decimal(50)),
    (Decimal(500_000), Decimal(100)),
    (Decimal(1_000_000), Decimal(500)),
    (Decimal(2_000_000), Decimal(1_000)),
)
_KRW_TICK_TOP = Decimal(1_000)
# Below 100 KRW the table goes on one decade at a time with three significant digits (10-100: 0.1,
# 1-10: 0.01, 0.1-1: 0.001, ...), down to Upbit's smallest unit, 0.00000001.
_KRW_TICK_FLOOR = Decimal("0.00000001")
# USDT/KRW and USDC/KRW trade on 0.5 KRW in the 1,000-10,000 band (changelog usdtkrw_tick_unit_change,
# 2025-03-21), where every other market has a tick of 1 or 5.
_HALF_WON_MARKETS = ("KRW-USDT", "KRW-USDC")
_HALF_WON_BAND = (Decimal(1_000), Decimal(10_000))

UPBIT_MIN_TOTAL_KRW = Decimal(5_000)  # orders/chance `min_total` of a KRW market
UPBIT_KRW_FEE = Decimal("0.0005")  # KRW markets: bid_fee = ask_fee = maker fees = 0.05 %


def upbit_tick(price: Decimal, market: str) -> Decimal:
    """The tick a KRW market trades on at this price."""
    if market in _HALF_WON_MARKETS and _HALF_WON_BAND[0] <= price < _HALF_WON_BAND[1]:
        return Decimal("0.5")
    if price >= 100:
        for below, tick in _KRW_TICK_FROM_100:
            if price < below:
                return tick
        return _KRW_TICK_TOP
    if price <= 0:
        return _KRW_TICK_FLOOR
    decade = price.adjusted()  # 10 ** decade <= price < 10 ** (decade + 1)
    return max(Decimal(1).scaleb(decade - 2), _KRW_TICK_FLOOR)


def on_upbit_tick(price: Decimal, market: str) -> bool:
    return price % upbit_tick(price, market) == 0


# --- Binance (docs/venue.md, Market rules; BSD filters.md) ----------------------------------------
BINANCE_FEE = Decimal("0.001")  # VIP 0 maker and taker, commissionRates "0.00100000"
BINANCE_BNB_DISCOUNT = Decimal("0.25")  # paying the commission in BNB


def _str8(value: Decimal) -> str:
    return f"{value:.8f}"


@dataclass(frozen=True, slots=True)
class SymbolFilters:
    """One symbol's PRICE_FILTER, LOT_SIZE and NOTIONAL as the venue publishes them in exchangeInfo.

    Each bound is disabled when 0. A price passes PRICE_FILTER iff minPrice <= price <= maxPrice and
    price % tickSize == 0; a quantity passes LOT_SIZE likewise; price * quantity must lie within
    NOTIONAL's [minNotional, maxNotional].
    """

    tick_size: Decimal
    step_size: Decimal
    min_price: Decimal = Decimal("0.01")
    max_price: Decimal = Decimal(1_000_000)
    min_qty: Decimal = Decimal(0)
    max_qty: Decimal = Decimal(9_000_000)
    min_notional: Decimal = Decimal(5)
    max_notional: Decimal = Decimal(9_000_000)

    def to_exchange_info(self) -> list[dict]:
        return [
            {"filterType": "PRICE_FILTER", "minPrice": _str8(self.min_price), "maxPrice": _str8(self.max_price),
             "tickSize": _str8(self.tick_size)},
            {"filterType": "LOT_SIZE", "minQty": _str8(self.min_qty), "maxQty": _str8(self.max_qty),
             "stepSize": _str8(self.step_size)},
            {"filterType": "NOTIONAL", "minNotional": _str8(self.min_notional), "applyMinToMarket": True,
             "maxNotional": _str8(self.max_notional), "applyMaxToMarket": False, "avgPriceMins": 5},
        ]

    @staticmethod
    def _fails(value: Decimal, low: Decimal, high: Decimal, step: Decimal) -> bool:
        below = bool(low) and value < low
        above = bool(high) and value > high
        off_grid = bool(step) and value % step != 0
        return below or above or off_grid

    def price_error(self, price: Decimal) -> str | None:
        """The failing filter's name for a limit price, or None."""
        return "PRICE_FILTER" if self._fails(price, self.min_price, self.max_price, self.tick_size) else None

    def quantity_error(self, quantity: Decimal) -> str | None:
        return "LOT_SIZE" if self._fails(quantity, self.min_qty, self.max_qty, self.step_size) else None

    def notional_error(self, notional: Decimal) -> str | None:
        return "NOTIONAL" if self._fails(notional, self.min_notional, self.max_notional, Decimal(0)) else None
