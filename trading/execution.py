"""Executors: the loop hands a pair to one; paper mode fills both legs against the live books."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Protocol

from django.db import transaction

from . import ledger
from .fields import money
from .models import Order, Pair
from .signals import Fees
from .state import ExecutionRecord, Level, OrderRecord, StateManager

log = logging.getLogger(__name__)
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class PairRequest:
    """What to trade: quantity of symbol, bought on buy_exchange and sold on sell_exchange."""

    symbol: str
    buy_exchange: str
    sell_exchange: str
    quantity: Decimal
    expected_buy_price: Decimal  # native quote of the buy venue
    expected_sell_price: Decimal
    fx_rate: Decimal
    lot_step: Decimal


class Executor(Protocol):
    def execute(self, pair: Pair, request: PairRequest, tick_received_at: datetime | None = None) -> Pair: ...

    def publish(self, pair: Pair, tick_received_at: datetime | None = None) -> None: ...


def take(levels: list[Level], quantity: Decimal) -> list[Level]:
    """Slices of the book a taker order of `quantity` consumes (less when depth is short)."""
    out, left = [], quantity
    for price, size in levels:
        if left <= 0:
            break
        part = min(size, left)
        out.append((price, part))
        left -= part
    return out


def to_krw(exchange: str, amount: Decimal, fx: Decimal) -> Decimal:
    return amount * fx if exchange == "binance" else amount


class PaperExecutor:
    """Both legs filled at once against the current books in Redis: taker fills, fees as charged."""

    mode = "paper"

    def __init__(self, state: StateManager, fees: Fees):
        self.state = state
        self.fees = fees

    def execute(self, pair: Pair, request: PairRequest, tick_received_at: datetime | None = None) -> Pair:
        buy_book = self.state.get_book(request.buy_exchange, request.symbol)
        sell_book = self.state.get_book(request.sell_exchange, request.symbol)
        if buy_book is None or sell_book is None:
            pair.state = Pair.State.FAILED
            pair.note = "no book at send time"
            pair.save()
            return pair
        fx = request.fx_rate
        with transaction.atomic():
            buy = self._leg(pair, request.buy_exchange, "buy", request, request.expected_buy_price,
                            take(buy_book.asks, request.quantity))
            sell = self._leg(pair, request.sell_exchange, "sell", request, request.expected_sell_price,
                             take(sell_book.bids, request.quantity))
            matched = min(buy.filled_quantity, sell.filled_quantity)
            notes = []
            # A leg that filled more than the other leaves exposure: unwind the excess at once.
            hedge_pnl = Decimal(0)
            excess = buy.filled_quantity - sell.filled_quantity
            if excess:
                over, side, levels = (buy, "sell", buy_book.bids) if excess > 0 else (sell, "buy", sell_book.asks)
                hedge = self._leg(pair, over.exchange, side, request, over.average_price, take(levels, abs(excess)),
                                  suffix="h")
                sign = 1 if side == "sell" else -1
                hedge_pnl = to_krw(over.exchange, sign * (hedge.average_price - over.average_price) * hedge.filled_quantity, fx)
                notes.append(f"legs filled {buy.filled_quantity} / {sell.filled_quantity}; "
                             f"unwound {hedge.filled_quantity} on {over.exchange}")
            buy_krw = to_krw(buy.exchange, buy.average_price, fx)
            sell_krw = to_krw(sell.exchange, sell.average_price, fx)
            fees = sum((self._fee_krw(o, fx) for o in pair.orders.all()), Decimal(0))
            gross = (sell_krw - buy_krw) * matched + hedge_pnl
            pair.quantity = matched
            pair.buy_price = money(buy_krw)
            pair.sell_price = money(sell_krw)
            pair.expected_buy_price = money(to_krw(buy.exchange, request.expected_buy_price, fx))
            pair.expected_sell_price = money(to_krw(sell.exchange, request.expected_sell_price, fx))
            pair.fx_rate = fx
            pair.gross_pnl = money(gross)
            pair.fees = money(fees)
            pair.net_pnl = money(gross - fees)
            pair.pnl_pct = money((gross - fees) / (buy_krw * matched) * HUNDRED) if matched else Decimal(0)
            pair.state = (Pair.State.FILLED if matched == request.quantity and not excess
                          else Pair.State.PARTIAL if matched else Pair.State.FAILED)
            pair.note = "; ".join(notes)[:300]
            pair.save()
        return pair

    def _leg(self, pair: Pair, exchange: str, side: str, request: PairRequest, expected: Decimal,
             slices: list[Level], suffix: str = "") -> Order:
        filled = sum((q for _, q in slices), Decimal(0))
        filled = (filled / request.lot_step).to_integral_value(rounding=ROUND_FLOOR) * request.lot_step
        order = Order.objects.create(
            client_order_id=f"kimp-{pair.id.hex[:16]}-{side[0]}{suffix}", pair=pair, exchange=exchange,
            symbol=request.symbol, side=side, quantity=request.quantity if not suffix else filled, price=money(expected),
        )
        left, cost, fee = filled, Decimal(0), Decimal(0)
        for price, size in slices:
            part = min(size, left)
            if part <= 0:
                break
            fill = ledger.record_fill(order, price, part, self.fees.of(exchange))
            fee += fill.fee
            cost += price * part
            left -= part
        order.filled_quantity = filled
        order.average_price = money(cost / filled) if filled else Decimal(0)
        order.fee = fee
        order.fee_asset = ledger.QUOTE[exchange] if exchange == "upbit" or side == "sell" else request.symbol
        order.status = (Order.Status.FILLED if filled == order.quantity else
                        Order.Status.PARTIALLY_FILLED if filled else Order.Status.REJECTED)
        if not filled:
            order.reason = "no depth"
        order.save()
        return order

    @staticmethod
    def _fee_krw(order: Order, fx: Decimal) -> Decimal:
        if order.fee_asset == "KRW":
            return order.fee
        if order.fee_asset == "USDT":
            return order.fee * fx
        return order.fee * order.average_price * fx  # Binance buy: fee in the coin

    def publish(self, pair: Pair, tick_received_at: datetime | None = None) -> None:
        """Mirror the pair's orders and execution into Redis (SPEC §4); call once the ledger has committed."""
        now = datetime.now(UTC)
        orders = list(pair.orders.all())
        for order in orders:
            fill_rate = order.filled_quantity / order.quantity if order.quantity else Decimal(0)
            self.state.save_order(OrderRecord(
                str(order.id), order.exchange, order.symbol, order.side, order.quantity, order.average_price or order.price,
                order.status, order.filled_quantity, money(fill_rate), order.created_at, order.updated_at,
            ))
        buy = next((o for o in orders if o.side == "buy" and not o.client_order_id.endswith("h")), None)
        sell = next((o for o in orders if o.side == "sell" and not o.client_order_id.endswith("h")), None)
        self.state.save_execution(ExecutionRecord(
            pair.symbol, str(buy.id) if buy else "", str(sell.id) if sell else "", pair.buy_price, pair.sell_price,
            pair.quantity, pair.gross_pnl, pair.net_pnl, pair.fees, pair.pnl_pct, now,
        ), tick_received_at)
