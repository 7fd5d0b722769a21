"""The live executor: both legs sent at once over the signed adapters, and leg risk handled.

If the legs fill unequally (a reject, a partial fill, a timeout that resolves to less), the excess
is unwound at once with a market order on the venue that over-filled, and every order and fill
goes to the ledger. A leg whose outcome stays unknown after the look-ups cannot be hedged
blindly: the pair is flagged, a guard event is recorded and the kill switch is engaged until an
operator (or reconciliation) settles it.
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor
from decimal import ROUND_FLOOR, Decimal

from liveguard import guard as lg
from marketdata.rules import UPBIT_MIN_ORDER_KRW

from . import ledger
from .exchanges.errors import ExchangeError, OrderNotFound, UnknownOutcome
from .execution import PairRequest, PaperExecutor, to_krw
from .fields import money
from .models import Order, Pair
from .signals import Fees

log = logging.getLogger(__name__)
HUNDRED = Decimal(100)


def leg_ids(pair: Pair) -> tuple[str, str]:
    """The legs' client ids follow from the pair's id, which is committed before anything is sent."""
    return f"kimp{pair.id.hex[:20]}b", f"kimp{pair.id.hex[:20]}s"


def resume_pending(state, executor: LiveExecutor, older_than_s: float = 30.0) -> list[Pair]:
    """Settle live pairs left pending by a worker that died (only those older than any live attempt)."""
    from datetime import UTC, datetime, timedelta

    from django.db import transaction

    from . import positions

    settled = []
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
    for pair in Pair.objects.filter(state=Pair.State.PENDING, mode="live", created_at__lt=cutoff):
        token = state.acquire_lock(f"symbol:{pair.symbol}", 10_000)
        if token is None:
            continue
        try:
            fx = state.get_fx("upbit")
            request = PairRequest(pair.symbol, pair.buy_exchange, pair.sell_exchange, Decimal(0), Decimal(0), Decimal(0),
                                  fx.rate if fx else Decimal(0), Decimal("0.00000001"))
            with transaction.atomic():
                pair = executor.resume(pair, request)
                positions.apply_pair(pair) if pair.quantity else None
            executor.publish(pair)
            settled.append(pair)
            log.warning("resumed pair %s of %s: %s", pair.id, pair.symbol, pair.state)
        finally:
            state.release_lock(f"symbol:{pair.symbol}", token)
    return settled


def _n(value: Decimal) -> str:
    return f"{value.normalize():f}"


class LegResult:
    def __init__(self, order: Order, fills: list[tuple[Decimal, Decimal, Decimal, str]], error: Exception | None = None):
        self.order, self.fills, self.error = order, fills, error

    @property
    def filled(self) -> Decimal:
        return sum((q for _, q, _, _ in self.fills), Decimal(0))


class LiveExecutor(PaperExecutor):
    """Shares the paper executor's publishing; sends real orders instead of simulating fills."""

    mode = "live"

    def __init__(self, state, fees: Fees, adapters: dict, *, slippage: Decimal = Decimal("0.003"), lookups: int = 5):
        super().__init__(state, fees)
        self.adapters = adapters
        self.slippage = slippage
        self.lookups = lookups
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="leg")

    def execute(self, pair: Pair, request: PairRequest, tick_received_at=None) -> Pair:
        buy_id, sell_id = leg_ids(pair)
        buy_future = self.pool.submit(self._send, request.buy_exchange, "buy", request, request.expected_buy_price, buy_id)
        sell_future = self.pool.submit(self._send, request.sell_exchange, "sell", request, request.expected_sell_price, sell_id)
        return self._settle(pair, request, buy_future.result(), sell_future.result())

    def resume(self, pair: Pair, request: PairRequest) -> Pair:
        """Finish a pair whose worker died between or after its legs: look both legs up by their
        client ids (derived from the committed pair id), book what happened, unwind any imbalance."""
        buy_id, sell_id = leg_ids(pair)
        buy_sent = self._look_up(request.buy_exchange, "buy", request, buy_id)
        sell_sent = self._look_up(request.sell_exchange, "sell", request, sell_id)
        # The pair never recorded its size; the exchanges did.
        quantity = next((Decimal(str(r.get("origQty") or r.get("volume") or 0)) for r, *_ in (buy_sent, sell_sent) if r),
                        Decimal(0))
        return self._settle(pair, dataclasses.replace(request, quantity=quantity), buy_sent, sell_sent)

    def _look_up(self, exchange: str, side: str, request: PairRequest, client_id: str):
        adapter = self.adapters[exchange]
        try:
            if exchange == "binance":
                response = adapter.get_order(f"{request.symbol}USDT", client_id)
                # A query answers without fills; rebuild the one fill it implies from its totals.
                executed = Decimal(response["executedQty"])
                if executed:
                    avg = Decimal(response["cummulativeQuoteQty"]) / executed
                    fee_asset = request.symbol if side == "buy" else "USDT"
                    fee = executed * self.fees.binance if side == "buy" else executed * avg * self.fees.binance
                    response["fills"] = [{"price": str(avg), "qty": str(executed), "commission": str(fee),
                                          "commissionAsset": fee_asset}]
                return response, None, client_id, Decimal(response.get("price") or 0)
            response = adapter.get_order(client_id)
            return response, None, client_id, Decimal(response.get("price") or 0)
        except OrderNotFound as exc:  # never reached the exchange: nothing to book
            return None, exc, client_id, Decimal(0)
        except ExchangeError as exc:
            return None, exc, client_id, Decimal(0)

    def _settle(self, pair: Pair, request: PairRequest, buy_sent, sell_sent) -> Pair:
        buy, sell = self._book(pair, request, buy_sent, "buy"), self._book(pair, request, sell_sent, "sell")
        notes, hedge_pnl = [], Decimal(0)
        unknown = [leg for leg in (buy, sell) if isinstance(leg.error, UnknownOutcome)]
        if unknown:
            names = ", ".join(f"{leg.order.exchange} {leg.order.side}" for leg in unknown)
            notes.append(f"UNHEDGED: outcome of {names} unknown; kill switch engaged")
            self._flag(pair, f"leg outcome unknown: {names}")
        else:
            excess = buy.filled - sell.filled
            if excess:
                over, side = (buy, "sell") if excess > 0 else (sell, "buy")
                tradable = self._tradable(request, over, abs(excess))
                dust = abs(excess) - tradable
                filled_text = f"legs filled {_n(buy.filled)} / {_n(sell.filled)}"
                if tradable:
                    hedge = self._unwind(pair, request, over, side, tradable)
                    if hedge.filled == tradable:
                        sign = 1 if side == "sell" else -1
                        hedge_pnl = to_krw(over.order.exchange, sign * (self._avg(hedge) - self._avg(over)) * hedge.filled,
                                           request.fx_rate)
                        notes.append(f"{filled_text}; unwound {_n(hedge.filled)} on {over.order.exchange}")
                    else:
                        notes.append(f"UNHEDGED: {_n(tradable - hedge.filled)} {request.symbol} left on {over.order.exchange}")
                        self._flag(pair, f"unwind of {_n(tradable)} {request.symbol} on {over.order.exchange} incomplete")
                else:
                    notes.append(filled_text)
                if dust:
                    # Below the venue's lot size or minimum order: no order can carry it. Kept, and said.
                    notes.append(f"dust {_n(dust)} {request.symbol} kept on {over.order.exchange} (below its minimums)")
        matched = min(buy.filled, sell.filled)
        fx = request.fx_rate
        buy_krw, sell_krw = to_krw(buy.order.exchange, self._avg(buy), fx), to_krw(sell.order.exchange, self._avg(sell), fx)
        fees = sum((self._fee_krw(o, fx) for o in pair.orders.all()), Decimal(0))
        gross = (sell_krw - buy_krw) * matched + hedge_pnl
        pair.quantity, pair.fx_rate = matched, fx
        pair.buy_price, pair.sell_price = money(buy_krw), money(sell_krw)
        pair.expected_buy_price = money(to_krw(request.buy_exchange, request.expected_buy_price, fx))
        pair.expected_sell_price = money(to_krw(request.sell_exchange, request.expected_sell_price, fx))
        pair.gross_pnl, pair.fees, pair.net_pnl = money(gross), money(fees), money(gross - fees)
        basis = buy_krw * matched
        pair.pnl_pct = money((gross - fees) / basis * HUNDRED) if basis else Decimal(0)
        balanced = buy.filled == sell.filled == request.quantity
        pair.state = Pair.State.FILLED if balanced else Pair.State.PARTIAL if matched else Pair.State.FAILED
        pair.mode, pair.note = "live", "; ".join(notes)[:300]
        pair.save()
        return pair

    # --- legs ----------------------------------------------------------------------------------
    def _send(self, exchange: str, side: str, request: PairRequest, expected: Decimal, client_id: str):
        """One IOC limit at the expected price plus the slippage allowance; returns (response, error)."""
        limit = expected * (1 + self.slippage) if side == "buy" else expected * (1 - self.slippage)
        adapter = self.adapters[exchange]
        try:
            if exchange == "binance":
                return adapter.place_order_safely(f"{request.symbol}USDT", side.upper(), request.quantity, price=limit,
                                                  time_in_force="IOC", client_id=client_id, lookups=self.lookups), None, client_id, limit
            adapter.place_order_safely(f"KRW-{request.symbol}", "bid" if side == "buy" else "ask", "limit",
                                       volume=request.quantity, price=limit, time_in_force="ioc", identifier=client_id,
                                       lookups=self.lookups)
            return adapter.get_order(client_id), None, client_id, limit  # trades and fees are on the order
        except ExchangeError as exc:
            log.warning("%s %s leg failed: %s", exchange, side, exc)
            return None, exc, client_id, limit

    def _book(self, pair: Pair, request: PairRequest, sent, side: str, exchange: str | None = None) -> LegResult:
        response, error, client_id, limit = sent
        exchange = exchange or (request.buy_exchange if side == "buy" else request.sell_exchange)
        order = Order.objects.create(client_order_id=client_id, pair=pair, exchange=exchange, symbol=request.symbol,
                                     side=side, quantity=request.quantity, price=money(limit))
        fills = self._fills(exchange, side, response, request.symbol) if response else []
        for price, qty, fee, asset in fills:
            ledger.record_fill(order, price, qty, Decimal(0), fee=fee, fee_asset=asset)
        filled = sum((q for _, q, _, _ in fills), Decimal(0))
        order.filled_quantity = filled
        order.average_price = money(sum((p * q for p, q, _, _ in fills), Decimal(0)) / filled) if filled else Decimal(0)
        order.fee = sum((f for _, _, f, _ in fills), Decimal(0))
        order.fee_asset = fills[0][3] if fills else ""
        order.exchange_order_id = str((response or {}).get("orderId") or (response or {}).get("uuid") or "")
        order.status = (Order.Status.UNKNOWN if isinstance(error, UnknownOutcome) else Order.Status.REJECTED if error
                        else Order.Status.FILLED if filled == order.quantity else
                        Order.Status.PARTIALLY_FILLED if filled else Order.Status.CANCELED)
        order.reason = str(error)[:300] if error else ""
        order.save()
        return LegResult(order, fills, error)

    @staticmethod
    def _fills(exchange: str, side: str, response: dict, symbol: str) -> list[tuple[Decimal, Decimal, Decimal, str]]:
        if exchange == "binance":
            return [(Decimal(f["price"]), Decimal(f["qty"]), Decimal(f["commission"]), f["commissionAsset"])
                    for f in response.get("fills", [])]
        trades = response.get("trades", [])
        paid = Decimal(response.get("paid_fee") or "0")
        funds = sum((Decimal(t["funds"]) for t in trades), Decimal(0))
        # Upbit reports one fee per order; it is spread over the trades by their funds.
        return [(Decimal(t["price"]), Decimal(t["volume"]), paid * Decimal(t["funds"]) / funds if funds else Decimal(0), "KRW")
                for t in trades]

    def _tradable(self, request: PairRequest, over: LegResult, excess: Decimal) -> Decimal:
        """The part of an excess that an order on the over-filled venue can carry."""
        price = self._avg(over)
        if over.order.exchange == "binance":
            filters = self.adapters["binance"].filters(f"{request.symbol}USDT")
            quantity = (excess / filters.step_size).to_integral_value(rounding=ROUND_FLOOR) * filters.step_size
            return quantity if quantity * price >= filters.min_notional else Decimal(0)
        return excess if excess * price >= UPBIT_MIN_ORDER_KRW else Decimal(0)

    def _unwind(self, pair: Pair, request: PairRequest, over: LegResult, side: str, quantity: Decimal) -> LegResult:
        """Close the excess at market on the venue that over-filled."""
        exchange, client_id = over.order.exchange, f"{over.order.client_order_id}h"
        adapter = self.adapters[exchange]
        try:
            if exchange == "binance":
                response = adapter.place_order_safely(f"{request.symbol}USDT", side.upper(), quantity, client_id=client_id,
                                                      lookups=self.lookups)
            elif side == "sell":
                adapter.place_order_safely(f"KRW-{request.symbol}", "ask", "market", volume=quantity, identifier=client_id,
                                           lookups=self.lookups)
                response = adapter.get_order(client_id)
            else:
                budget = (quantity * self._avg(over) * Decimal("1.01")).quantize(Decimal(1))
                adapter.place_order_safely(f"KRW-{request.symbol}", "bid", "price", price=budget, identifier=client_id,
                                           lookups=self.lookups)
                response = adapter.get_order(client_id)
            error = None
        except ExchangeError as exc:
            response, error = None, exc
        hedge_request = PairRequest(request.symbol, request.buy_exchange, request.sell_exchange, quantity,
                                    request.expected_buy_price, request.expected_sell_price, request.fx_rate, request.lot_step)
        return self._book(pair, hedge_request, (response, error, client_id, self._avg(over)), side, exchange=exchange)

    @staticmethod
    def _avg(leg: LegResult) -> Decimal:
        return leg.order.average_price

    def _flag(self, pair: Pair, reason: str) -> None:
        """Stop new pairs until a person or reconciliation settles this one."""
        from liveguard.services import set_kill_switch

        lg.record(lg.Block("leg_risk", f"pair {pair.id}: {reason}"), pair.symbol)
        set_kill_switch(self.state, True, reason=f"leg risk: {reason}"[:200])
