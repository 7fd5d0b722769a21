"""The signal engine: both directions of each coin, in KRW, sized against book depth, after fees.

For a direction (buy on one venue, sell on the other) the engine walks both books level by level,
taking each slice whose own net spread (after every fee, the third leg's included) beats
`min_spread_pct`, up to the caps (position size, balances). The signal carries the volume-weighted
prices of the size actually traded, not the top of book, and each leg's limit price.

**The net spread.** A pair is three trades, not two: the coin bought on one venue and sold on the
other, and the USDT side of it converted on Upbit's KRW-USDT market (USDT bought with KRW before a
Binance buy, sold for KRW after a Binance sell). That third leg costs Upbit's taker fee plus half
the KRW-USDT spread (the rate is the book's mid; a taker trades at the bid or the ask):

    c      = f_upbit + (ask_usdt - bid_usdt) / 2 / mid_usdt
    l(v)   = f_v            on Upbit
             f_v + c        on Binance (applied to the Binance leg's notional, either direction)
    net %  = (S x (1 - l(sell)) - B x (1 + l(buy))) / (B x (1 + l(buy))) x 100

with B and S the KRW volume-weighted buy and sell prices (Binance prices x the KRW/USDT mid).

**The legs' limits.** Each leg is an IOC limit, set so that if both legs fill exactly at their
limits the pair still nets `min_spread_pct` (m, as a fraction) after all of the above. The surplus
per coin over that minimum,

    E = S x (1 - l(sell)) - (1 + m) x B x (1 + l(buy))      (> 0 for any signal)

is split evenly between the legs in KRW terms:

    buy limit  = B + (E / 2) / ((1 + m) x (1 + l(buy)))
    sell limit = S - (E / 2) / (1 - l(sell))

so filled at both limits the pair nets exactly m (the venues round the limits inward, never
beyond); a signal barely above the minimum gets limits barely beyond its expected prices.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

from trading.state import BookRecord, FxRecord, Level

HUNDRED = Decimal(100)
ZERO = Decimal(0)
UPBIT_MIN_ORDER_KRW = Decimal("5000")
BINANCE_MIN_NOTIONAL_USDT = Decimal("5")
UPBIT_VOLUME_STEP = Decimal("0.00000001")


@dataclass(frozen=True)
class Fees:
    """Taker rates as fractions of the notional (trading/fees.py reads them from the fee schedule).

    `binance` is the effective rate: with the BNB discount when fees are paid in BNB
    (`binance_in_bnb`), in which case `binance_undiscounted` is what is charged when BNB cannot pay.
    `usdt_conversion` is the third leg's cost (None: Upbit's taker fee alone, the spread unknown).
    """

    upbit: Decimal
    binance: Decimal
    binance_in_bnb: bool = False
    binance_undiscounted: Decimal | None = None
    usdt_conversion: Decimal | None = None

    def of(self, exchange: str) -> Decimal:
        """The venue's own taker rate."""
        return self.upbit if exchange == "upbit" else self.binance

    @property
    def conversion(self) -> Decimal:
        return self.upbit if self.usdt_conversion is None else self.usdt_conversion

    def leg(self, exchange: str) -> Decimal:
        """What a leg on `exchange` costs as a fraction of its notional: its fee, and on Binance the third leg."""
        return self.upbit if exchange == "upbit" else self.binance + self.conversion

    def with_fx(self, fx: FxRecord | None) -> Fees:
        """These rates with the third leg priced from the KRW-USDT record (its fee plus half its spread)."""
        return replace(self, usdt_conversion=conversion_cost(fx, self.upbit))


def conversion_cost(fx: FxRecord | None, fee: Decimal) -> Decimal:
    """The KRW-USDT leg as a fraction of its notional: Upbit's taker fee plus half the book's spread
    relative to its mid (no spread when the record has no bid/ask, e.g. a fixed rate)."""
    if fx is None or fx.bid is None or fx.ask is None or not fx.rate or fx.ask < fx.bid:
        return fee
    return fee + (fx.ask - fx.bid) / 2 / fx.rate


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
    # Each leg's IOC limit in its venue's quote: filled at both, the pair nets min_spread_pct.
    buy_limit_native: Decimal | None = None
    sell_limit_native: Decimal | None = None

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
    """The kimchi premium and the best net spread both ways at the top of book (third leg included)."""
    upbit_mid = (upbit.bids[0][0] + upbit.asks[0][0]) / 2
    binance_mid = (binance.bids[0][0] + binance.asks[0][0]) / 2
    value = (upbit_mid / (binance_mid * fx) - 1) * HUNDRED

    def net(buy_ask: Decimal, sell_bid: Decimal, buy_fee: Decimal, sell_fee: Decimal) -> Decimal:
        cost = buy_ask * (1 + buy_fee)
        return (sell_bid * (1 - sell_fee) - cost) / cost * HUNDRED

    return Premium(
        symbol, value, upbit_mid, binance_mid, fx,
        net(upbit.asks[0][0], binance.bids[0][0] * fx, fees.leg("upbit"), fees.leg("binance")),
        net(binance.asks[0][0] * fx, upbit.bids[0][0], fees.leg("binance"), fees.leg("upbit")),
    )


def _floor(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


def walk(asks: list[Level], bids: list[Level], buy_fee: Decimal, sell_fee: Decimal, min_net_pct: Decimal,
         max_quantity: Decimal, max_buy_krw: Decimal) -> Decimal:
    """Largest quantity whose every slice nets more than min_net_pct after fees (KRW levels; the fees
    are each leg's whole cost, see Fees.leg)."""
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
    buy_cost, sell_cost = fees.leg(buy.exchange), fees.leg(sell.exchange)
    quantity = walk(asks, bids, buy_cost, sell_cost, min_net_pct, max_quantity, max_buy_krw)
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
    net = net_pct(buy_krw, sell_krw, buy_cost, sell_cost)
    if net <= min_net_pct:
        return None
    buy_limit, sell_limit = leg_limits(buy_krw, sell_krw, buy_cost, sell_cost, min_net_pct)
    return Opportunity(
        symbol=symbol, buy_exchange=buy.exchange, sell_exchange=sell.exchange, quantity=quantity,
        buy_price=buy_krw, sell_price=sell_krw, buy_price_native=buy_native, sell_price_native=sell_native,
        top_buy_price=asks[0][0], top_sell_price=bids[0][0], fx_rate=fx, net_spread_pct=net,
        buy_book_time=buy.timestamp, sell_book_time=sell.timestamp,
        buy_limit_native=buy_limit / (fx if buy.exchange == "binance" else 1),
        sell_limit_native=sell_limit / (fx if sell.exchange == "binance" else 1),
    )


def net_pct(buy_krw: Decimal, sell_krw: Decimal, buy_cost: Decimal, sell_cost: Decimal) -> Decimal:
    """The net spread in % of buying at buy_krw and selling at sell_krw, each leg costing its fraction."""
    cost = buy_krw * (1 + buy_cost)
    return (sell_krw * (1 - sell_cost) - cost) / cost * HUNDRED


def leg_limits(buy_krw: Decimal, sell_krw: Decimal, buy_cost: Decimal, sell_cost: Decimal,
               min_net_pct: Decimal) -> tuple[Decimal, Decimal]:
    """Each leg's limit in KRW: the surplus over the minimum net spread split evenly between the legs,
    so that filled exactly at both limits the pair nets `min_net_pct` (see the module's docstring)."""
    m = min_net_pct / HUNDRED
    half = (sell_krw * (1 - sell_cost) - (1 + m) * buy_krw * (1 + buy_cost)) / 2
    if half < 0:  # no room at all: the limits are the expected prices
        half = ZERO
    return buy_krw + half / ((1 + m) * (1 + buy_cost)), sell_krw - half / (1 - sell_cost)


def best_opportunity(symbol: str, upbit: BookRecord, binance: BookRecord, fx: Decimal, fees: Fees,
                     min_net_pct: Decimal, caps_for, lot_step: Decimal) -> Opportunity | None:
    """The better of the two directions; caps_for(buy_exchange, sell_exchange) gives each one's caps."""
    found = [
        evaluate_direction(symbol, upbit, binance, fx, fees, min_net_pct, caps_for("upbit", "binance"), lot_step),
        evaluate_direction(symbol, binance, upbit, fx, fees, min_net_pct, caps_for("binance", "upbit"), lot_step),
    ]
    found = [o for o in found if o is not None]
    return max(found, key=lambda o: o.net_spread_pct * o.quantity * o.buy_price) if found else None
