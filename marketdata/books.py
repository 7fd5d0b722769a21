"""Local order books. Sorting happens only when the top levels are read (at flush time)."""

from __future__ import annotations

from bisect import bisect_left, insort
from decimal import Decimal

from .exceptions import BookGapError
from .parsers import BookSnapshot, DepthDiff, Level


class LevelBook:
    """Price -> quantity on each side, with each side's prices kept sorted.

    A level change costs a bisect; reading the top N is a slice. (heapq over the dict at every
    flush cost the feed more than parsing did.)
    """

    __slots__ = ("bids", "asks", "_bid_prices", "_ask_prices")

    def __init__(self):
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self._bid_prices: list[Decimal] = []  # ascending: best bid last
        self._ask_prices: list[Decimal] = []  # ascending: best ask first

    def replace(self, bids: list[Level], asks: list[Level]) -> None:
        self.bids = dict(bids)
        self.asks = dict(asks)
        self._bid_prices = sorted(self.bids)
        self._ask_prices = sorted(self.asks)

    def clear(self) -> None:
        self.replace([], [])

    @staticmethod
    def _apply_side(side: dict[Decimal, Decimal], prices: list[Decimal], levels: list[Level]) -> None:
        for price, qty in levels:
            if qty:
                if price not in side:
                    insort(prices, price)
                side[price] = qty
            elif price in side:
                del side[price]
                del prices[bisect_left(prices, price)]
            # Removing a level we never had is normal (it was beyond our depth).

    def apply(self, bids: list[Level], asks: list[Level]) -> None:
        self._apply_side(self.bids, self._bid_prices, bids)
        self._apply_side(self.asks, self._ask_prices, asks)

    def top(self, depth: int) -> tuple[list[Level], list[Level]]:
        """Best levels first: bids high to low, asks low to high."""
        bids = self.bids
        asks = self.asks
        return (
            [(p, bids[p]) for p in reversed(self._bid_prices[-depth:])],
            [(p, asks[p]) for p in self._ask_prices[:depth]],
        )


class DiffDepthBook(LevelBook):
    """A Binance book kept by the documented snapshot + U/u procedure.

    Until a snapshot is loaded, events are buffered. apply() raises BookGapError when an event
    does not follow the last applied one; the owner then resets and fetches a new snapshot.
    """

    __slots__ = ("last_update_id", "buffer", "max_buffer", "dropped")

    def __init__(self, max_buffer: int = 1000):
        super().__init__()
        self.last_update_id: int | None = None
        self.buffer: list[DepthDiff] = []
        self.max_buffer = max_buffer
        self.dropped = 0  # events dropped from a full buffer (a snapshot then has to be newer)

    @property
    def synced(self) -> bool:
        return self.last_update_id is not None

    def reset(self) -> None:
        self.clear()
        self.last_update_id = None
        self.buffer.clear()

    def on_event(self, event: DepthDiff) -> bool:
        """Buffer or apply an event; True when the book changed."""
        if not self.synced:
            self.buffer.append(event)
            if len(self.buffer) > self.max_buffer:
                # Bounded while snapshots are refused: drop the oldest. load_snapshot() then rejects
                # any snapshot older than what is still held, so the book resyncs correctly.
                del self.buffer[: len(self.buffer) - self.max_buffer]
                self.dropped += 1
            return False
        return self._apply(event)

    def _apply(self, event: DepthDiff) -> bool:
        if event.final_id <= self.last_update_id:
            return False  # already contained in what we hold
        if event.first_id > self.last_update_id + 1:
            raise BookGapError(
                f"{event.market}: update ids jump from {self.last_update_id} to {event.first_id}"
            )
        self.apply(event.bids, event.asks)
        self.last_update_id = event.final_id
        return True

    def load_snapshot(self, snapshot: BookSnapshot) -> bool:
        """Install a REST snapshot and replay the buffer; False if the snapshot is too old."""
        if self.buffer and snapshot.last_update_id < self.buffer[0].first_id - 1:
            return False  # older than the first event we hold: fetch again
        self.replace(snapshot.bids, snapshot.asks)
        self.last_update_id = snapshot.last_update_id
        pending, self.buffer = self.buffer, []
        for event in pending:
            self._apply(event)  # may raise BookGapError; the owner resets
        return True
