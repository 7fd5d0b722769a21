"""The signal engine: both directions of each coin, in KRW, sized against book depth, after fees.

For a direction (buy on one venue, sell on the other) the engine walks both books level by level,
taking each slice whose own net spread (after both taker fees) beats `min_spread_pct`, up to the
caps (position size, balances). The signal carries the volume-weighted prices of the size actually
traded, not the top of book.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

from trading.state import BookRecord, Level

HUNDRED = Decimal(100)
ZERO = Decimal(0)
UPBIT_MIN_ORDER_KRW = Decimal("5000")
BINANCE_MIN_NOTIONAL_USDT = Decimal("5")
UPBIT_VOLUME_STEP = Decimal("0.00000001")


@dataclass(frozen=True)
class Fees:
    upbit: Decimal
    binance: Decimal

    def of(self, exchange: str) -> Decimal:
        return self.upbit if exchange == "upbit" else self.binance


@dataclass(frozen=True)
class Caps:
    """What one pair may use: KRW notional, quote on the buy venue, base on the sell venue."""

    max_notional_krw: Decimal
    buy_quote_available: Decimal | None = None  # in the buy venue's quote (KRW or USDT)
    sell_base_available: Decimal | None = None


@dataclass(frozen=True)
class Opportunity:
    symbol: str
    buy_exchange: str
    sell_exchange: str
    quantity: Decimal
    buy_price: Decimal  # KRW, volume-weighted for `quantity`
    sell_price: Decimal  # KRW
    buy_price_native: Decimal  # in the buy venue's quote
    sell_price_native: Decimal
    top_buy_price: Decimal  # KRW, best ask
    top_sell_price: Decimal  # KRW, best bid
    fx_rate: Decimal
    net_spread_pct: Decimal
    buy_book_time: datetime
    sell_book_time: datetime

    @property
    def spread(self) -> Decimal:
        return self.sell_price - self.buy_price

    @property
    def spread_pct(self) -> Decimal:
        return self.spread / self.buy_price * HUNDRED

    @property
    def top_spread_pct(self) -> Decimal:
        return (self.top_sell_price - self.top_buy_price) / self.top_buy_price * HUNDRED

    @property
    def notional_krw(self) -> Decimal:
        return self.buy_price * self.quantity


@dataclass(frozen=True)
class Premium:
    symbol: str
    premium_pct: Decimal  # upbit_krw / (binance_usdt * usdt_krw) - 1, in %
    upbit_mid: Decimal
    binance_mid: Decimal
    fx_rate: Decimal
    best_net_upbit_to_binance: Decimal | None  # net spread % buying Upbit, selling Binance (top of book)
    best_net_binance_to_upbit: Decimal | None


def _krw(levels: list[Level], exchange: str, fx: Decimal) -> list[Level]:
    return levels if exchange == "upbit" else [(p * fx, q) for p, q in levels]


def premium(symbol: str, upbit: BookRecord, binance: BookRecord, fx: Decimal, fees: Fees) -> Premium:
    """The kimchi premium and the best net spread both ways at the top of book."""
    upbit_mid = (upbit.bids[0][0] + upbit.asks[0][0]) / 2
    binance_mid = (binance.bids[0][0] + binance.asks[0][0]) / 2
    value = (upbit_mid / (binance_mid * fx) - 1) * HUNDRED

    def net(buy_ask: Decimal, sell_bid: Decimal, buy_fee: Decimal, sell_fee: Decimal) -> Decimal:
        cost = buy_ask * (1 + buy_fee)
        return (sell_bid * (1 - sell_fee) - cost) / cost * HUNDRED

    return Premium(
        symbol, value, upbit_mid, binance_mid, fx,
        net(upbit.asks[0][0], binance.bids[0][0] * fx, fees.upbit, fees.binance),
        net(binance.asks[0][0] * fx, upbit.bids[0][0], fees.binance, fees.upbit),
    )


def _floor(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


def walk(asks: list[Level], bids: list[Level], buy_fee: Decimal, sell_fee: Decimal, min_net_pct: Decimal,
         max_quantity: Decimal, max_buy_krw: Decimal) -> Decimal:
    """Largest quantity whose every slice nets more than min_net_pct after fees (KRW levels)."""
    quantity = ZERO
    spent = ZERO
    ai = bi = 0
    ask_left = asks[0][1] if asks else ZERO
    bid_left = bids[0][1] if bids else ZERO
    while ai < len(asks) and bi < len(bids) and quantity < max_quantity:
        ask, bid = asks[ai][0], bids[bi][0]
        cost = ask * (1 + buy_fee)
        if (bid * (1 - sell_fee) - cost) / cost * HUNDRED <= min_net_pct:
            break
        take = min(ask_left, bid_left, max_quantity - quantity)
        if spent + take * ask > max_buy_krw:
            take = (max_buy_krw - spent) / ask
            quantity += take
            break
        quantity += take
        spent += take * ask
        ask_left -= take
        bid_left -= take
        if ask_left <= 0:
            ai += 1
            ask_left = asks[ai][1] if ai < len(asks) else ZERO
        if bid_left <= 0:
            bi += 1
            bid_left = bids[bi][1] if bi < len(bids) else ZERO
    return quantity


def vwap(levels: list[Level], quantity: Decimal) -> Decimal | None:
    """Average price of taking `quantity` from levels (best first); None when depth is short."""
    left = quantity
    cost = ZERO
    for price, size in levels:
        take = min(size, left)
        cost += take * price
        left -= take
        if left <= 0:
            return cost / quantity
    return None


def evaluate_direction(symbol: str, buy: BookRecord, sell: BookRecord, fx: Decimal, fees: Fees,
                       min_net_pct: Decimal, caps: Caps, lot_step: Decimal) -> Opportunity | None:
    """The best-sized opportunity buying on `buy`'s venue and selling on `sell`'s, or None."""
    if not buy.asks or not sell.bids:
        return None
    asks = _krw(buy.asks, buy.exchange, fx)
    bids = _krw(sell.bids, sell.exchange, fx)
    max_buy_krw = caps.max_notional_krw
    if caps.buy_quote_available is not None:
        quote_krw = caps.buy_quote_available * (fx if buy.exchange == "binance" else 1)
        # Keep the buy venue's fee inside what is available.
        max_buy_krw = min(max_buy_krw, quote_krw / (1 + fees.of(buy.exchange)))
    max_quantity = caps.sell_base_available if caps.sell_base_available is not None else Decimal("1e18")
    quantity = walk(asks, bids, fees.of(buy.exchange), fees.of(sell.exchange), min_net_pct, max_quantity, max_buy_krw)
    quantity = _floor(quantity, max(lot_step, UPBIT_VOLUME_STEP))
    if quantity <= 0:
        return None
    buy_native = vwap(buy.asks, quantity)
    sell_native = vwap(sell.bids, quantity)
    if buy_native is None or sell_native is None:
        return None
    buy_krw = buy_native * (fx if buy.exchange == "binance" else 1)
    sell_krw = sell_native * (fx if sell.exchange == "binance" else 1)
    # Both venues' minimum order sizes.
    upbit_notional = quantity * (buy_native if buy.exchange == "upbit" else sell_native)
    binance_notional = quantity * (buy_native if buy.exchange == "binance" else sell_native)
    if upbit_notional < UPBIT_MIN_ORDER_KRW or binance_notional < BINANCE_MIN_NOTIONAL_USDT:
        return None
    cost = buy_krw * (1 + fees.of(buy.exchange))
    net = (sell_krw * (1 - fees.of(sell.exchange)) - cost) / cost * HUNDRED
    if net <= min_net_pct:
        return None
    return Opportunity(
        symbol=symbol, buy_exchange=buy.exchange, sell_exchange=sell.exchange, quantity=quantity,
        buy_price=buy_krw, sell_price=sell_krw, buy_price_native=buy_native, sell_price_native=sell_native,
        top_buy_price=asks[0][0], top_sell_price=bids[0][0], fx_rate=fx, net_spread_pct=net,
        buy_book_time=buy.timestamp, sell_book_time=sell.timestamp,
    )


def best_opportunity(symbol: str, upbit: BookRecord, binance: BookRecord, fx: Decimal, fees: Fees,
                     min_net_pct: Decimal, caps_for, lot_step: Decimal) -> Opportunity | None:
    """The better of the two directions; caps_for(buy_exchange, sell_exchange) gives each one's caps."""
    found = [
        evaluate_direction(symbol, upbit, binance, fx, fees, min_net_pct, caps_for("upbit", "binance"), lot_step),
        evaluate_direction(symbol, binance, upbit, fx, fees, min_net_pct, caps_for("binance", "upbit"), lot_step),
    ]
    found = [o for o in found if o is not None]
    return max(found, key=lambda o: o.net_spread_pct * o.quantity * o.buy_price) if found else None
