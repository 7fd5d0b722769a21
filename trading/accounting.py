"""The accounting model (docs/ACCOUNTING.md): every PnL figure on the dashboard and the API.

* Reporting currency: KRW.
* Marks: each holding at its own venue's price — a coin on Upbit at Upbit's mid, a coin on Binance
  at Binance's mid × the KRW/USDT rate, USDT at that rate (the mid of Upbit's KRW-USDT book, the
  market where the system converts), KRW at 1. No cross-venue price: a premium is not a gain
  until the coin moves to the dearer venue or the premium converges.
* Equity = Σ balance × mark. Flows (deposits, withdrawals) are valued when booked and are never
  performance: PnL = equity − flows.
* Realized / unrealized: average cost per venue and asset, in KRW. An acquisition adds its KRW
  value (the quote given, at the fill's rate) to the asset's cost basis; a disposal removes the
  average cost of the units given and realizes the difference from the value received; a fee
  removes the fee units at their average cost (a realized cost). Σ cost basis = flows + realized,
  event by event, so unrealized = equity − Σ cost basis and equity = flows + realized + unrealized
  exactly.
* Decomposition of a period's PnL: trading (per pair: spread captured at the signal's prices,
  slippage versus the signal, hedges, fees — summing to each pair's net PnL) and holding (every
  mark moving on what is held: the FX part on USDT-priced holdings, the rest inventory
  revaluation, which includes the premium carried by open positions).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from django.db import connection
from django.db.models import Sum

from .fields import money
from .models import EquitySnapshot, LedgerEntry, Pair

ZERO = Decimal(0)
QUOTES = {"upbit": "KRW", "binance": "USDT"}


@dataclass(frozen=True)
class Marks:
    """KRW per unit of each (venue, asset); `fx` is KRW per USDT."""

    fx: Decimal
    prices: dict[tuple[str, str], Decimal] = field(default_factory=dict)  # coin mids in the venue's quote

    def of(self, venue: str, asset: str) -> Decimal | None:
        venue = venue.removeprefix("to_")  # coins in transit: valued where they are going
        if asset == "KRW":
            return Decimal(1)
        if asset == "USDT":
            return self.fx
        price = self.prices.get((venue, asset))
        if price is None:
            return None
        return price if QUOTES[venue] == "KRW" else price * self.fx


def current_marks(state, fx: Decimal, assets) -> Marks:
    """Each coin held at its venue's mid (read in one round trip); in transit, at the destination's."""
    wanted = {(venue.removeprefix("to_"), asset) for venue, asset in assets if asset not in ("KRW", "USDT")}
    return Marks(fx, {key: record.mid for key, record in state.get_prices(sorted(wanted)).items()})


@dataclass
class Book:
    """The cost-basis book after replaying the ledger."""

    quantity: dict[tuple[str, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    basis: dict[tuple[str, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    flows: Decimal = ZERO
    realized: Decimal = ZERO
    realized_fees: Decimal = ZERO  # part of `realized`: fee units at their cost
    unvalued: list[int] = field(default_factory=list)  # entries with no KRW value (kept at zero cost)

    def average(self, key) -> Decimal:
        q = self.quantity[key]
        return self.basis[key] / q if q > 0 else ZERO

    def _dispose(self, key, units: Decimal) -> Decimal:
        """Remove `units` at average cost, to the ledger's unit (1e-8 KRW, so that every sum here is exact);
        returns the cost removed (all of it when nothing is left)."""
        if units == self.quantity[key]:
            cost = self.basis[key]
        else:
            cost = money(self.basis[key] * units / self.quantity[key]) if self.quantity[key] > 0 else ZERO
        self.quantity[key] -= units
        self.basis[key] -= cost
        return cost

    def _acquire(self, key, units: Decimal, value: Decimal) -> None:
        self.quantity[key] += units
        self.basis[key] += value

    def apply_flow(self, key, amount: Decimal, value: Decimal) -> None:
        if amount >= 0:
            self._acquire(key, amount, value)
            self.flows += value
        else:
            cost = self._dispose(key, -amount)
            self.flows -= value
            self.realized += value - cost

    def apply_trade(self, entry: LedgerEntry) -> None:
        """One entry of a fill (the coin leg or the quote leg, at the same value, or its fee), or an
        adjustment without one: each stands on its own."""
        key = (entry.venue, entry.asset)
        value = entry.value_krw
        if value is None:
            self.unvalued.append(entry.pk)
            value = ZERO
        if entry.kind == LedgerEntry.Kind.FEE:
            cost = self._dispose(key, -entry.amount)
            self.realized -= cost
            self.realized_fees -= cost
        elif entry.amount > 0:
            self._acquire(key, entry.amount, value)
        else:
            cost = self._dispose(key, -entry.amount)
            self.realized += value - cost

    def apply_transfer(self, entry: LedgerEntry, moving: dict) -> None:
        """One entry of our coins moving between holdings: the units given up carry their cost to the
        units received (never PnL), through `moving` (booking -> cost given up, not yet received); a
        fee leaves at its cost (a realized cost). A booking gives up before it receives (its entries
        are posted so) and receives once."""
        key, booking = (entry.venue, entry.asset), (entry.transfer_id, transfer_leg(entry))
        if entry.kind == LedgerEntry.Kind.FEE:
            cost = self._dispose(key, -entry.amount)
            self.realized -= cost
            self.realized_fees -= cost
        elif entry.amount < 0:
            moving[booking] = moving.get(booking, ZERO) + self._dispose(key, -entry.amount)
        else:
            self._acquire(key, entry.amount, moving.pop(booking, ZERO))

    def total_basis(self) -> Decimal:
        return sum(self.basis.values(), ZERO)


def transfer_leg(entry: LedgerEntry) -> str:
    """Which of a transfer's two bookings an entry is from: "out" (source -> in transit, the source's
    fee) or "in" (in transit -> destination, a fee taken in transit). Each booking's cost travels on
    its own: the arrival's must not be taken by the departure's receipt, nor the other way round."""
    in_transit = entry.venue.startswith("to_")
    if entry.kind == LedgerEntry.Kind.FEE:
        return "in" if in_transit else "out"
    return "in" if in_transit == (entry.amount < 0) else "out"


class _Replay:
    """A replay in progress: the book so far, the transfers' cost given up and not yet received, and a
    fingerprint of what was read (entries up to `last_id`: how many, and the last one's time)."""

    def __init__(self, database: str = ""):
        self.database = database
        self.book = Book()
        self.moving: dict[tuple, Decimal] = {}
        self.last_id = 0
        self.read = 0
        self.last_created: datetime | None = None
        self.unvalued_flows = False  # a flow read without a value: value_flows may value it later

    def feed(self, entries) -> None:
        """Apply entries in booking order, one at a time: a fill's entries are independent of each other,
        and a transfer's cost goes from its booking's disposal to its receipt through `moving`, so
        that neither depends on a booking's entries being neighbours (another session's insert can
        take an id between them)."""
        book = self.book
        for entry in entries:
            self.last_id, self.last_created, self.read = entry.id, entry.created_at, self.read + 1
            if entry.transfer_id is not None:
                book.apply_transfer(entry, self.moving)
            elif entry.fill_id is None and entry.kind in (LedgerEntry.Kind.DEPOSIT, LedgerEntry.Kind.WITHDRAWAL):
                if entry.value_krw is None:
                    book.unvalued.append(entry.pk)
                    self.unvalued_flows = True
                book.apply_flow((entry.venue, entry.asset), entry.amount, entry.value_krw or ZERO)
            else:  # a fill's entry, or a trade or fee entry without a fill (adjustments, valued as booked)
                book.apply_trade(entry)

    def result(self) -> Book:
        """The book as a copy (this replay goes on from where it was). Cost given up by a transfer with
        nothing received for it yet is a loss here, never hidden; booked whole, that never shows."""
        book = Book(defaultdict(Decimal, self.book.quantity), defaultdict(Decimal, self.book.basis), self.book.flows,
                    self.book.realized, self.book.realized_fees, list(self.book.unvalued))
        book.realized -= sum(self.moving.values(), ZERO)
        return book

    def may_go_on(self) -> bool:
        """Whether entries read may have changed since in a way no count shows: only a flow read without
        a value is ever updated (value_flows), and this replay is of this database."""
        return self.database == connection.settings_dict["NAME"] and not self.unvalued_flows

    def last_unchanged(self) -> bool:
        """The last entry read is still there, as read: not rolled back, its id not taken again (SQLite
        reuses the ids of rows rolled back). One look-up by primary key, before reading on."""
        last = LedgerEntry.objects.filter(id=self.last_id).values_list("created_at", flat=True).first()
        return last == self.last_created

    def still_holds(self) -> bool:
        """True when the entries read are exactly the ledger's entries up to the last one read: none
        committed since with a lower id (a transaction that took its ids earlier and committed later),
        none gone. Asked after reading: then the book holds every transaction whole (each commits all
        its entries at once), as a replay from the start does. The count is read off the primary
        key's index alone."""
        return LedgerEntry.objects.filter(id__lte=self.last_id).count() == self.read


_replayed: _Replay | None = None
_replay_lock = threading.Lock()


def replay(until: datetime | None = None) -> Book:
    """Replay the ledger in booking order, entry by entry (_Replay.feed).

    The ledger only grows, so the whole ledger is replayed once per process and afterwards only the
    entries booked since (the metrics ask every second, and the ledger of a year is long). After reading
    them, the entries read are checked to be exactly the ledger's up to the last one (a transaction that
    committed between the reads, with ids on both sides of the previous last one, would otherwise be
    read in part); anything unexpected replays from the start, in one query."""
    global _replayed
    if until is not None:
        state = _Replay()
        state.feed(LedgerEntry.objects.filter(created_at__lte=until).order_by("id").iterator(chunk_size=2000))
        return state.result()
    with _replay_lock:
        # Taken out while it is fed: an update cut short (a time limit, an error) leaves nothing behind.
        state, _replayed = _replayed, None
        if state is not None and state.may_go_on() and state.last_unchanged():
            state.feed(LedgerEntry.objects.filter(id__gt=state.last_id).order_by("id").iterator(chunk_size=2000))
            if not state.still_holds():
                state = None
        else:
            state = None
        if state is None:
            state = _Replay(connection.settings_dict["NAME"])
            state.feed(LedgerEntry.objects.order_by("id").iterator(chunk_size=2000))
        _replayed = state
        return state.result()


def value_flows(marks: Marks) -> int:
    """Give flows booked without a value (a live start before any book was known) the first marks seen."""
    valued = 0
    for entry in LedgerEntry.objects.filter(kind__in=(LedgerEntry.Kind.DEPOSIT, LedgerEntry.Kind.WITHDRAWAL),
                                            value_krw__isnull=True):
        mark = marks.of(entry.venue, entry.asset)
        if mark is not None:
            LedgerEntry.objects.filter(pk=entry.pk).update(value_krw=money(entry.amount * mark))
            valued += 1
    return valued


@dataclass(frozen=True)
class Valuation:
    equity: Decimal
    flows: Decimal
    realized: Decimal
    unrealized: Decimal
    fees_realized: Decimal
    unpriced: tuple[str, ...]  # holdings with no mark (left out of equity, said)
    usdt_exposure: Decimal  # USDT-priced holdings in USDT: what a move of the rate revalues

    @property
    def pnl(self) -> Decimal:
        return self.equity - self.flows


def valuation(marks: Marks, book: Book | None = None) -> Valuation:
    """Equity at the marks, and its split: flows + realized + unrealized (exact)."""
    book = book or replay()
    equity, unpriced, usdt = ZERO, [], ZERO
    for key, quantity in book.quantity.items():
        if quantity == 0:
            continue
        mark = marks.of(*key)
        if mark is None:
            unpriced.append(f"{key[0]} {key[1]}")
            continue
        equity += quantity * mark
        venue = key[0].removeprefix("to_")
        if key[1] == "USDT":
            usdt += quantity
        elif QUOTES[venue] == "USDT":
            usdt += quantity * marks.prices[(venue, key[1])]
    # Unpriced holdings stay at cost, so that the identity holds and nothing is invented.
    at_cost = sum((book.basis[k] for k, q in book.quantity.items() if q and marks.of(*k) is None), ZERO)
    equity += at_cost
    unrealized = equity - book.total_basis()
    return Valuation(equity, book.flows, book.realized, unrealized, book.realized_fees, tuple(unpriced), usdt)


# --- periods ------------------------------------------------------------------------------------
def snapshot(marks: Marks, now: datetime | None = None) -> EquitySnapshot:
    v = valuation(marks)
    return EquitySnapshot.objects.create(
        taken_at=now or datetime.now(UTC), equity=money(v.equity), flows=money(v.flows), realized=money(v.realized),
        unrealized=money(v.unrealized), fx_rate=money(marks.fx), usdt_exposure=money(v.usdt_exposure),
        trading_pnl=money(closed_pairs_pnl(None)),
    )


def baseline(since: datetime) -> EquitySnapshot | None:
    """The snapshot a period starts from: the last one at or before `since`, else the first after it."""
    return (EquitySnapshot.objects.filter(taken_at__lte=since).order_by("-taken_at").first()
            or EquitySnapshot.objects.filter(taken_at__gt=since).order_by("taken_at").first())


def closed_pairs_pnl(since: datetime | None) -> Decimal:
    pairs = Pair.objects.filter(stage=Pair.Stage.CLOSED)
    if since is not None:
        pairs = pairs.filter(updated_at__gte=since)
    return pairs.aggregate(total=Sum("net_pnl"))["total"] or ZERO


@dataclass(frozen=True)
class PeriodPnl:
    since: datetime | None
    pnl: Decimal  # equity change less flows
    trading: Decimal  # Σ net PnL of the pairs closed in the period
    spread_captured: Decimal
    slippage: Decimal
    hedges: Decimal
    fees: Decimal  # negative: a cost
    fx: Decimal  # revaluation of USDT-priced holdings by the rate's move
    inventory: Decimal  # every other mark move on what is held (the premium carried included)

    @property
    def holding(self) -> Decimal:
        return self.fx + self.inventory


def pair_components(pairs) -> dict[str, Decimal]:
    """Spread captured at the signal's prices, slippage versus the signal, hedges, fees: Σ = Σ net PnL."""
    spread = slippage = hedges = fees = ZERO
    for p in pairs:
        captured = money((p.expected_sell_price - p.expected_buy_price) * p.quantity)
        spread += captured
        slippage += p.gross_pnl - p.hedge_pnl - captured
        hedges += p.hedge_pnl
        fees -= p.fees
    return {"spread_captured": spread, "slippage": slippage, "hedges": hedges, "fees": fees}


def period_pnl(current: Valuation, fx_now: Decimal, since: datetime | None) -> PeriodPnl:
    """PnL since `since` (None: since the first flow) and its decomposition, which sums exactly."""
    base = baseline(since) if since is not None else None
    base_pnl = (base.equity - base.flows) if base else ZERO
    pnl = money(current.pnl - base_pnl)
    pairs = Pair.objects.filter(stage=Pair.Stage.CLOSED)
    if base is not None:
        pairs = pairs.filter(updated_at__gt=base.taken_at)
    # Rows, not models: the metrics ask every second, and a busy day closes hundreds of pairs.
    parts = pair_components(pairs.values_list("expected_buy_price", "expected_sell_price", "quantity", "gross_pnl",
                                              "hedge_pnl", "fees", named=True))
    trading = sum(parts.values(), ZERO)
    # The rate's move on what was priced in USDT at the period's start (at the baseline's holdings).
    fx = money(base.usdt_exposure * (fx_now - base.fx_rate)) if base else ZERO
    inventory = pnl - trading - fx
    return PeriodPnl(base.taken_at if base else None, pnl, trading, parts["spread_captured"], parts["slippage"],
                     parts["hedges"], parts["fees"], fx, inventory)
