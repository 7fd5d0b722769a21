"""The pair lifecycle: one settlement path for paper and live, over the venue-neutral interface.

A pair moves through stages, each committed before the external calls it leads to:

    planned ──► sending ──► closed            (both legs known, equal or unwound to dust)
                   │  ▲
                   ▼  │
               unwinding ─► flagged           (a leg or hedge unknown, or an unwind fell short)

* **planned**: the pair is recorded; no order exists.
* **sending**: both leg orders are recorded (client ids, sizes, limits); they may have been sent.
* **unwinding**: the legs are known and filled unequally; a hedge order for exactly the excess is
  recorded and may have been sent.
* **closed**: every order is known and booked; the coin position is updated in the same
  transaction; any remainder is dust below every venue's minimum, and the note says so.
* **flagged**: an order's outcome stays unknown, or an unwind could not carry the excess: the coin
  is paused, and once the pair outlives its bound, a `leg_risk` guard event names the exposure
  and the kill switch is engaged.

A crash anywhere leaves the pair in the stage it reached, with a lease; after the lease, `resume`
looks up every order that is not final by its client id and carries on from there. Nothing is ever
booked twice (fills are keyed by the venue's trade id) and no order is ever sent twice (client ids
derive from the pair's id and the order's sequence, and an order is resent only under a new id
once the old one is proven absent or finished).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from django.db import transaction

from arbproject.logs import log_context
from liveguard import guard as lg
from liveguard.models import SymbolPause
from liveguard.services import pause_symbol, resume_symbol, set_kill_switch

from . import ledger, positions, telemetry
from .exchanges.types import LegOrder, LegReport, LegStatus, Venue
from .fees import FeeValuer  # each fee valued in KRW when filled (a BNB fee at BNB's price)
from .fields import money
from .models import Fill, Order, Pair, Position
from .signals import Fees
from .state import ExecutionRecord, Level, OrderRecord, StateManager

log = logging.getLogger(__name__)
HUNDRED = Decimal(100)
ZERO = Decimal(0)
HEDGE_ROUNDS = 5  # resumes that may try a flagged pair's unwind again
OPEN_STAGES = (Pair.Stage.PLANNED, Pair.Stage.SENDING, Pair.Stage.UNWINDING, Pair.Stage.FLAGGED)


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
    # Each leg's IOC limit in its venue's quote. None: the expected price moved by the executor's
    # slippage allowance (closes, tests). The engine sets them from the signal's edge.
    buy_limit: Decimal | None = None
    sell_limit: Decimal | None = None


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
    """An amount in the venue's quote, in KRW at the pair's rate."""
    return amount if ledger.QUOTE[exchange] == "KRW" else amount * fx


def client_id(pair: Pair, role: str, side: str, seq: int = 0) -> str:
    """Derived from the committed pair id: the same order always has the same id (Binance allows 36 chars)."""
    tag = side[0] if role == Order.Role.LEG else f"h{seq}"
    return f"kimp{pair.id.hex[:20]}{tag}"


def leg_ids(pair: Pair) -> tuple[str, str]:
    return client_id(pair, Order.Role.LEG, "buy"), client_id(pair, Order.Role.LEG, "sell")


@contextmanager
def held_lock(state: StateManager, name: str, token: str | None, ttl_ms: int):
    """Keep a Redis lock alive for as long as the block runs (a pair can outlast the lock's TTL)."""
    if token is None:
        yield
        return
    stop = threading.Event()

    def renew():
        while not stop.wait(ttl_ms / 3000):
            try:
                if not state.extend_lock(name, token, ttl_ms):
                    log.warning("lock %s was lost while a pair ran; the pair's lease still fences resume", name)
                    return
            except Exception as exc:  # noqa: BLE001 — Redis away: the DB lease still fences resume
                log.warning("lock %s not renewed: %s", name, exc)

    keeper = threading.Thread(target=renew, name=f"lock-{name}", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stop.set()
        keeper.join(1)


class PairExecutor:
    """Runs a pair through its lifecycle on two venues (paper or live: the same code)."""

    def __init__(self, state: StateManager, fees: Fees, venues: dict[str, Venue], *, mode: str,
                 slippage: Decimal = Decimal("0.003"), unwind_slippage: Decimal = Decimal("0.01"),
                 max_hedges: int = 3, lease_s: float = 120.0, flag_after_s: float = 60.0):
        self.state, self.fees, self.venues, self.mode = state, fees, venues, mode
        self.slippage, self.unwind_slippage = slippage, unwind_slippage
        self.max_hedges, self.lease_s, self.flag_after_s = max_hedges, lease_s, flag_after_s
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="leg")
        # Test hook: called with a step name before each external call or commit (fault injection).
        self.checkpoint = lambda step, pair: None

    @property
    def adapters(self) -> dict[str, Venue]:
        return self.venues

    # --- the lifecycle --------------------------------------------------------------------------
    def execute(self, pair: Pair, request: PairRequest, tick_received_at: datetime | None = None) -> Pair:
        """planned -> sending -> (unwinding) -> closed | flagged. Returns the pair as it ended."""
        started = time.perf_counter()
        with log_context(coin=pair.symbol, pair_id=pair.id):
            buy, sell = self._record_legs(pair, request)
            self.checkpoint("legs_recorded", pair)
            log.info("pair %s sent: buy %s %s on %s, sell on %s", pair.id, _n(buy.quantity), pair.symbol,
                     buy.exchange, sell.exchange)
            reports = self._send([buy, sell])
            self.checkpoint("legs_sent", pair)
            self._book_all(reports)
            self.checkpoint("legs_booked", pair)
            pair = self.advance(pair)
        telemetry.observe_pair(time.perf_counter() - started)
        return pair

    def resume(self, pair: Pair) -> Pair:
        """Carry on a pair a dead (or timed-out) worker left: settle every order that is not final by
        looking it up, then continue the lifecycle from what the venues say happened."""
        with log_context(coin=pair.symbol, pair_id=pair.id):
            orders = list(pair.orders.all())
            if not orders:  # planned, nothing recorded, so nothing was sent
                return self._close(pair, note="never sent")
            unsettled = [o for o in orders if o.status in (Order.Status.NEW, Order.Status.UNKNOWN)]
            reports = []
            for order in unsettled:
                sent_at = order.sent_at.timestamp() if order.sent_at else None
                venue = self.venues[order.exchange]
                reports.append((order, venue.resolve(order.symbol, order.side, order.client_order_id, sent_at)))
            self._book_all(reports)
            return self.advance(pair)

    def advance(self, pair: Pair) -> Pair:
        """From booked orders to the next stage: unwind an unequal fill, or close, or flag.

        Up to `max_hedges` hedges per call, backing off between them (a venue that refused may need a
        moment); a pair still short after them is flagged, and each later resume tries again, up to
        `max_hedges x HEDGE_ROUNDS` hedges in the pair's life.
        """
        sent_now = 0
        while True:
            # With their fills: a close values their fees from them.
            orders = list(Order.objects.filter(pair=pair).order_by("created_at").prefetch_related("fills"))
            unknown = [o for o in orders if o.status in (Order.Status.NEW, Order.Status.UNKNOWN)]
            if unknown:
                return self._unresolved(pair, unknown)
            legs = {o.side: o for o in orders if o.role == Order.Role.LEG}
            buy, sell = legs["buy"], legs["sell"]
            hedges = [o for o in orders if o.role == Order.Role.HEDGE]
            over, hedge_side, excess = self._excess(buy, sell, hedges)
            if excess == 0:
                return self._close(pair, orders=orders)
            carried = self.venues[over.exchange].tradable(pair.symbol, excess, over.average_price)
            if carried == 0:
                return self._close(pair, dust=(excess, over.exchange), orders=orders)
            if sent_now >= self.max_hedges or len(hedges) >= self.max_hedges * HEDGE_ROUNDS:
                return self._short_unwind(pair, excess, over.exchange)
            if sent_now:
                time.sleep(min(0.25 * 2 ** (sent_now - 1), 2.0))
            hedge = self._record_hedge(pair, over, hedge_side, carried, len(hedges) + 1)
            self.checkpoint("hedge_recorded", pair)
            log.info("pair %s unwinding: %s %s %s on %s", pair.id, hedge_side, _n(carried), pair.symbol, over.exchange)
            [(order, report)] = self._send([hedge])
            self.checkpoint("hedge_sent", pair)
            self._book_all([(order, report)])
            self.checkpoint("hedge_booked", pair)
            sent_now += 1

    # --- stages -----------------------------------------------------------------------------------
    def _lease(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.lease_s)

    def _record_legs(self, pair: Pair, request: PairRequest) -> tuple[Order, Order]:
        now = datetime.now(UTC)
        buy_limit = self.venues[request.buy_exchange].limit_price(
            request.symbol, "buy", request.buy_limit or request.expected_buy_price * (1 + self.slippage))
        sell_limit = self.venues[request.sell_exchange].limit_price(
            request.symbol, "sell", request.sell_limit or request.expected_sell_price * (1 - self.slippage))
        buy_id, sell_id = leg_ids(pair)
        with transaction.atomic():
            buy = Order.objects.create(client_order_id=buy_id, pair=pair, exchange=request.buy_exchange,
                                       symbol=request.symbol, side="buy", role=Order.Role.LEG, quantity=request.quantity,
                                       price=money(buy_limit), sent_at=now)
            sell = Order.objects.create(client_order_id=sell_id, pair=pair, exchange=request.sell_exchange,
                                        symbol=request.symbol, side="sell", role=Order.Role.LEG, quantity=request.quantity,
                                        price=money(sell_limit), sent_at=now)
            pair.stage, pair.lease_until, pair.mode = Pair.Stage.SENDING, self._lease(), self.mode
            pair.requested_quantity, pair.fx_rate = request.quantity, request.fx_rate
            pair.expected_buy_price = money(to_krw(request.buy_exchange, request.expected_buy_price, request.fx_rate))
            pair.expected_sell_price = money(to_krw(request.sell_exchange, request.expected_sell_price, request.fx_rate))
            pair.save()
        return buy, sell

    def _record_hedge(self, pair: Pair, over: Order, side: str, quantity: Decimal, seq: int) -> Order:
        """The hedge takes exactly the excess, at a limit that widens with each attempt up to the bound."""
        widen = self.unwind_slippage * min(seq, self.max_hedges) / self.max_hedges  # never past the bound
        bound = over.average_price * (1 - widen) if side == "sell" else over.average_price * (1 + widen)
        limit = self.venues[over.exchange].limit_price(pair.symbol, side, bound)
        with transaction.atomic():
            hedge = Order.objects.create(client_order_id=client_id(pair, Order.Role.HEDGE, side, seq), pair=pair,
                                         exchange=over.exchange, symbol=pair.symbol, side=side, role=Order.Role.HEDGE,
                                         quantity=quantity, price=money(limit), sent_at=datetime.now(UTC))
            Pair.objects.filter(pk=pair.pk).update(stage=Pair.Stage.UNWINDING, lease_until=self._lease())
        pair.stage = Pair.Stage.UNWINDING
        telemetry.count_unwind()
        return hedge

    def _send(self, orders: list[Order]) -> list[tuple[Order, LegReport]]:
        def one(order: Order) -> LegReport:
            leg = LegOrder(order.symbol, order.side, order.quantity, order.price or None, order.client_order_id)
            started = time.perf_counter()
            try:
                return self.venues[order.exchange].submit(leg)
            except Exception as exc:  # noqa: BLE001 — the venue's own failure: the order may exist
                log.exception("%s %s: submit raised", order.exchange, order.client_order_id)
                return LegReport(order.exchange, order.symbol, order.side, order.client_order_id, LegStatus.UNKNOWN,
                                 quantity=order.quantity, error=f"{type(exc).__name__}: {exc}"[:300])
            finally:
                telemetry.observe_leg(order.exchange, time.perf_counter() - started)

        if len(orders) > 1 and all(getattr(self.venues[o.exchange], "remote", True) for o in orders):
            # Each leg's thread runs in a copy of this context: its log lines carry the pair's coin and id.
            futures = [self.pool.submit(contextvars.copy_context().run, one, o) for o in orders]
            return [(o, f.result()) for o, f in zip(orders, futures, strict=True)]
        return [(o, one(o)) for o in orders]

    def _book_all(self, reports: list[tuple[Order, LegReport]]) -> None:
        with transaction.atomic():
            # Two pairs booking at once touch shared balances (each venue's quote) in different orders;
            # take every row this booking will move first, in one order, so they can never deadlock.
            keys = sorted({(o.exchange, a) for o, r in reports for a in (o.symbol, ledger.QUOTE[o.exchange],
                                                                        *(f.fee_asset for f in r.fills))})
            ledger.lock_balances(keys)
            rates = self._quote_rates({o.pair_id for o, _ in reports})
            # Every order this booking settles, locked in one order (by id), and the trade ids already booked.
            ids = [o.pk for o, _ in reports]
            locked = {o.pk: o for o in Order.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
            known: dict = {pk: set() for pk in ids}
            for order_id, trade_id in Fill.objects.filter(order_id__in=ids).values_list("order_id", "trade_id"):
                known[order_id].add(trade_id)
            for order, report in reports:
                self._book(locked[order.pk], report, rates, known[order.pk])

    def _book(self, order: Order, report: LegReport, rates: dict, known: set[str]) -> Order:
        """Book what the venue reported, once: fills keyed by trade id (`known`: those already booked),
        the order's status from the report. `order` is locked by the caller's transaction."""
        if order.status not in (Order.Status.NEW, Order.Status.UNKNOWN):
            return order  # already settled (a resume racing a late answer changes nothing)
        status = report.status
        if status is LegStatus.DONE:
            rate = Decimal(1) if ledger.QUOTE[order.exchange] == "KRW" else rates.get(order.pair_id)
            valuer = FeeValuer(self.state, self.venues.get(order.exchange), order, self.fees, rate)
            for fill in report.fills:
                if fill.trade_id and fill.trade_id in known:
                    continue
                fee_krw, fee_note = valuer.value(fill.price, fill.fee, fill.fee_asset)
                ledger.record_fill(order, fill.price, fill.quantity, ZERO, fee=fill.fee, fee_asset=fill.fee_asset,
                                   trade_id=fill.trade_id, quote_rate_krw=rate, fee_value_krw=fee_krw, fee_note=fee_note)
            order.filled_quantity = report.executed
            order.average_price = money(report.average_price)
            order.fee = money(report.fee)
            order.fee_asset = report.fee_asset
            if report.quantity:
                order.quantity = report.quantity
            order.status = (Order.Status.FILLED if report.executed >= order.quantity and report.executed else
                            Order.Status.PARTIALLY_FILLED if report.executed else Order.Status.CANCELED)
        elif status is LegStatus.REJECTED:
            order.status = Order.Status.REJECTED
        elif status is LegStatus.ABSENT:
            order.status = Order.Status.ABSENT
        else:
            order.status = Order.Status.UNKNOWN
            telemetry.count_unknown(order.exchange)
        order.exchange_order_id = report.exchange_order_id or order.exchange_order_id
        order.reason = report.error[:300]
        order.save()
        return order

    @staticmethod
    def _quote_rates(pair_ids) -> dict:
        """KRW per USDT at each pair's rate (the accounting values USDT-quoted fills with it), read once."""
        return {pk: rate or None for pk, rate in Pair.objects.filter(pk__in=pair_ids).values_list("pk", "fx_rate")}

    @staticmethod
    def _excess(buy: Order, sell: Order, hedges: list[Order]) -> tuple[Order, str, Decimal]:
        """The over-filled leg, the side that unwinds it, and what is still to unwind."""
        if buy.filled_quantity >= sell.filled_quantity:
            over, side, excess = buy, "sell", buy.filled_quantity - sell.filled_quantity
        else:
            over, side, excess = sell, "buy", sell.filled_quantity - buy.filled_quantity
        done = sum((h.filled_quantity for h in hedges if h.side == side and h.exchange == over.exchange), ZERO)
        return over, side, max(ZERO, excess - done)

    def _close(self, pair: Pair, note: str = "", dust: tuple[Decimal, str] | None = None,
               orders: list[Order] | None = None) -> Pair:
        """Every order known and booked: the pair's result and the coin's position commit together.
        orders: the pair's orders with their fills, as just read (else read here)."""
        self.checkpoint("close", pair)
        if orders is None:
            orders = list(Order.objects.filter(pair=pair).prefetch_related("fills"))  # their fees' values, in one query
        legs = {o.side: o for o in orders if o.role == Order.Role.LEG}
        buy, sell = legs.get("buy"), legs.get("sell")
        fx = pair.fx_rate
        notes = [note] if note else []
        hedge_pnl = ZERO
        if buy is not None and sell is not None:
            if buy.filled_quantity != sell.filled_quantity:
                notes.append(f"legs filled {_n(buy.filled_quantity)} / {_n(sell.filled_quantity)}")
            for hedge in (o for o in orders if o.role == Order.Role.HEDGE and o.filled_quantity):
                over = buy if hedge.side == "sell" else sell
                sign = 1 if hedge.side == "sell" else -1
                hedge_pnl += to_krw(hedge.exchange, sign * (hedge.average_price - over.average_price) * hedge.filled_quantity, fx)
                notes.append(f"unwound {_n(hedge.filled_quantity)} on {hedge.exchange}")
        if dust:
            # Below the venue's lot size or minimum order: no order can carry it. Kept, and said.
            notes.append(f"dust {_n(dust[0])} {pair.symbol} kept on {dust[1]} (below its minimums)")
        matched = min(buy.filled_quantity, sell.filled_quantity) if buy and sell else ZERO
        buy_krw = to_krw(buy.exchange, buy.average_price, fx) if buy else ZERO
        sell_krw = to_krw(sell.exchange, sell.average_price, fx) if sell else ZERO
        fees = sum((self._fee_krw(o, fx) for o in orders), ZERO)
        gross = (sell_krw - buy_krw) * matched + hedge_pnl
        with transaction.atomic():
            locked = Pair.objects.select_for_update().get(pk=pair.pk)
            if locked.stage == Pair.Stage.CLOSED:
                return locked  # closed by another path already
            pair.quantity = matched
            pair.buy_price, pair.sell_price = money(buy_krw), money(sell_krw)
            pair.hedge_pnl = money(hedge_pnl)
            pair.gross_pnl, pair.fees, pair.net_pnl = money(gross), money(fees), money(gross - fees)
            basis = buy_krw * matched
            pair.pnl_pct = money((gross - fees) / basis * HUNDRED) if basis else ZERO
            complete = buy and sell and buy.filled_quantity == sell.filled_quantity == pair.requested_quantity
            pair.state = Pair.State.FILLED if complete else Pair.State.PARTIAL if matched else Pair.State.FAILED
            pair.stage, pair.lease_until = Pair.Stage.CLOSED, None
            # A close pair's reason (stop-loss, flatten) stays; an earlier "unresolved" remark does not.
            prior = "" if locked.note.startswith(("UNRESOLVED", "UNHEDGED")) else locked.note
            pair.note = "; ".join(filter(None, [prior, *notes]))[:300]
            pair.save()
            if matched:
                positions.apply_pair(pair)
        telemetry.count_pair(pair.state)
        if dust:
            telemetry.count_dust()
        log.info("pair %s %s: %s %s, net %s KRW%s", pair.id, pair.state, _n(matched), pair.symbol, _n(pair.net_pnl),
                 f" ({pair.note})" if pair.note else "")
        self._lift_pause(pair)
        return pair

    def _unresolved(self, pair: Pair, unknown: list[Order]) -> Pair:
        """An order may exist and nobody can say: never closed, never hedged blindly. The coin stops
        now; past the bound the exposure is named and everything stops."""
        names = ", ".join(f"{o.exchange} {o.side} {o.client_order_id}" for o in unknown)
        reason = f"pair {pair.id}: outcome of {names} unknown"
        Pair.objects.filter(pk=pair.pk).update(lease_until=None, note=f"UNRESOLVED: outcome of {names} unknown"[:300])
        pair.refresh_from_db()
        self._pause(pair, reason)
        if datetime.now(UTC) - pair.created_at > timedelta(seconds=self.flag_after_s) or pair.stage == Pair.Stage.FLAGGED:
            self._flag(pair, reason)
        return pair

    def _short_unwind(self, pair: Pair, excess: Decimal, exchange: str) -> Pair:
        reason = f"pair {pair.id}: {_n(excess)} {pair.symbol} left on {exchange} after {self.max_hedges} unwind attempts"
        Pair.objects.filter(pk=pair.pk).update(lease_until=None, note=f"UNHEDGED: {_n(excess)} {pair.symbol} on {exchange}")
        pair.refresh_from_db()
        self._pause(pair, reason)
        self._flag(pair, reason)
        return pair

    def _flag(self, pair: Pair, reason: str) -> None:
        """Name the exposure and stop everything until a person (or a later resume) settles it."""
        if pair.stage != Pair.Stage.FLAGGED:  # once: a resume that tries again does not re-engage it
            Pair.objects.filter(pk=pair.pk).update(stage=Pair.Stage.FLAGGED)
            pair.stage = Pair.Stage.FLAGGED
            telemetry.count_pair("flagged")
            lg.record(lg.Block("leg_risk", reason), pair.symbol)
            log.error("leg risk: %s", reason)
            set_kill_switch(self.state, True, reason=f"leg risk: {reason}"[:200])

    def _pause(self, pair: Pair, reason: str) -> None:
        pause_symbol(self.state, pair.symbol, reason=f"{PAUSE_PREFIX}{pair.id}: {reason}"[:200])

    def _lift_pause(self, pair: Pair) -> None:
        """A pause this pair put on its coin goes when the pair closes (an operator's pause stays)."""
        if SymbolPause.objects.filter(symbol=pair.symbol, reason__startswith=f"{PAUSE_PREFIX}{pair.id}").exists():
            resume_symbol(self.state, pair.symbol)

    @staticmethod
    def _fee_krw(order: Order, fx: Decimal) -> Decimal:
        """The order's fees in KRW: the sum of its fills' values when filled (trading/fees.py; a fee in
        BNB at BNB's price then). A fill that could not be valued adds nothing; its note says so."""
        if not order.fee:
            return ZERO
        total = ZERO
        for fill in order.fills.all():
            if fill.fee_krw is not None:
                total += fill.fee_krw
            elif fill.fee and fill.fee_asset in (ledger.QUOTE[order.exchange], "KRW", order.symbol):
                # booked before fills carried their value: the quote, or the coin at the fill's price
                amount = fill.fee * fill.price if fill.fee_asset == order.symbol else fill.fee
                total += amount if fill.fee_asset == "KRW" else to_krw(order.exchange, amount, fx)
        return total

    # --- hot state ------------------------------------------------------------------------------
    def publish(self, pair: Pair, tick_received_at: datetime | None = None) -> None:
        """Mirror the pair's orders and execution into Redis (docs/redis-keys.md); call once the ledger has committed."""
        now = datetime.now(UTC)
        orders = list(pair.orders.all())
        for order in orders:
            fill_rate = order.filled_quantity / order.quantity if order.quantity else ZERO
            self.state.save_order(OrderRecord(
                str(order.id), order.exchange, order.symbol, order.side, order.quantity, order.average_price or order.price,
                order.status, order.filled_quantity, money(fill_rate), order.created_at, order.updated_at,
            ))
        if pair.stage != Pair.Stage.CLOSED:
            return
        buy = next((o for o in orders if o.side == "buy" and o.role == Order.Role.LEG), None)
        sell = next((o for o in orders if o.side == "sell" and o.role == Order.Role.LEG), None)
        self.state.save_execution(ExecutionRecord(
            pair.symbol, str(buy.id) if buy else "", str(sell.id) if sell else "", pair.buy_price, pair.sell_price,
            pair.quantity, pair.gross_pnl, pair.net_pnl, pair.fees, pair.pnl_pct, now,
        ), tick_received_at)


PAUSE_PREFIX = "unresolved pair "


def claim_unsettled(lease_s: float, older_than_s: float = 0.0, mode: str | None = None) -> list[Pair]:
    """Pairs no worker owns any more (lease run out), claimed for this caller with a new lease.

    The row lock (SKIP LOCKED on PostgreSQL) makes two resumers take disjoint pairs.
    """
    now = datetime.now(UTC)
    cutoff = now - timedelta(seconds=older_than_s)
    claimed = []
    with transaction.atomic():
        query = Pair.objects.select_for_update(skip_locked=True).filter(stage__in=OPEN_STAGES, created_at__lte=cutoff)
        if mode:
            query = query.filter(mode=mode)
        for pair in query.order_by("created_at")[:50]:
            if pair.lease_until is not None and pair.lease_until > now:
                continue  # its worker is still on it
            pair.lease_until = now + timedelta(seconds=lease_s)
            pair.save(update_fields=["lease_until"])
            claimed.append(pair)
    return claimed


def resume_pending(state: StateManager, executor: PairExecutor, older_than_s: float = 0.0) -> list[Pair]:
    """Settle pairs left open by a worker that died, timed out, or could not resolve a leg."""
    settled = []
    for pair in claim_unsettled(executor.lease_s, older_than_s, mode=executor.mode):
        token = state.acquire_lock(f"symbol:{pair.symbol}", int(executor.lease_s * 1000))
        if token is None:
            Pair.objects.filter(pk=pair.pk).update(lease_until=None)
            continue  # the coin is being traded right now; next time
        try:
            with held_lock(state, f"symbol:{pair.symbol}", token, int(executor.lease_s * 1000)):
                pair = executor.resume(pair)
            executor.publish(pair)
            position = Position.objects.filter(symbol=pair.symbol).first()
            positions.sync_exposure(state, pair.symbol, position)
            positions.publish(state, position, pair.symbol)
            settled.append(pair)
            log.warning("resumed pair %s of %s: %s / %s", pair.id, pair.symbol, pair.stage, pair.state)
        except Exception:
            log.exception("resume of pair %s failed; it stays open", pair.id)
            Pair.objects.filter(pk=pair.pk).update(lease_until=None)
        finally:
            state.release_lock(f"symbol:{pair.symbol}", token)
    return settled


def _n(value: Decimal) -> str:
    return f"{value.normalize():f}"

