"""Binance feed: diff depth over the combined stream, kept by the snapshot + U/u procedure."""

from __future__ import annotations

import time

import requests

from marketdata.books import DiffDepthBook
from marketdata.exceptions import BookGapError, FeedMessageError
from marketdata.parsers import BINANCE, DepthDiff, binance_symbol, parse_binance_depth_snapshot, parse_binance_message
from marketdata.rules import BinanceFilters

from .base import FeedWorker, log

SNAPSHOT_ATTEMPTS = 3
MAX_RETRY_AFTER = 600.0  # a Retry-After beyond this is read as this
BACKOFF_BASE = 0.5
BACKOFF_MAX = 30.0


def retry_after_seconds(value, default: float) -> float:
    """A Retry-After header as seconds, bounded; garbage reads as the default."""
    try:
        seconds = float(str(value).strip())
    except (TypeError, ValueError):
        return default
    if seconds != seconds or seconds < 0:  # NaN or negative
        return default
    return min(seconds, MAX_RETRY_AFTER)


class SnapshotRefused(FeedMessageError):
    """The depth snapshot was refused with 429/418: nothing may be asked before retry_after."""

    def __init__(self, reason: str, retry_after: float):
        super().__init__(reason, "snapshot_error")
        self.retry_after = retry_after


class BinanceFeed(FeedWorker):
    exchange = BINANCE

    def __init__(self, *args, snapshot_limit: int = 100, time_unit: str = "", session: requests.Session | None = None, max_buffer: int = 1000, **kwargs):
        super().__init__(*args, **kwargs)
        self.snapshot_limit = snapshot_limit
        self.max_buffer = max_buffer  # diffs held per coin while it waits for a snapshot
        self.time_unit = time_unit
        self.session = session or requests.Session()
        self.need_snapshot: set[str] = set()
        self.books: dict[str, DiffDepthBook] = {}
        # Snapshot pacing (monotonic instants): per coin after a failure, and for every coin
        # after a 429/418 (Binance bans the IP if it is asked again before Retry-After).
        self.snapshot_not_before: dict[str, float] = {}
        self.snapshot_failures: dict[str, int] = {}
        self.rest_not_before = 0.0

    def market(self, symbol: str) -> str:
        return f"{symbol}USDT"

    def connect_url(self) -> str:
        streams = "/".join(f"{self.market(s).lower()}@depth@100ms" for s in self.symbols)
        url = f"{self.ws_url.rstrip('/')}/stream?streams={streams}"
        return f"{url}&timeUnit={self.time_unit}" if self.time_unit else url

    def on_connected(self) -> None:
        self.load_rules()

    def load_rules(self) -> None:
        """Publish each symbol's PRICE_FILTER / LOT_SIZE / NOTIONAL for sizing and order checks."""
        try:
            response = self.session.get(f"{self.rest_url}/api/v3/exchangeInfo", timeout=5)
            response.raise_for_status()
            symbols = response.json()["symbols"]
        except (requests.RequestException, ValueError, KeyError) as exc:
            log.warning("binance: exchangeInfo unavailable (%s); sizing keeps the last known rules", exc)
            return
        wanted = {self.market(s): s for s in self.symbols}
        for info in symbols:
            symbol = wanted.get(info.get("symbol"))
            if symbol is None:
                continue
            f = BinanceFilters.from_exchange_info(info.get("filters", []))
            self.state.set_rules(BINANCE, symbol, {"tick_size": str(f.tick_size), "step_size": str(f.step_size),
                                                   "min_notional": str(f.min_notional)})

    def reset_books(self) -> None:
        super().reset_books()
        self.books = {s: DiffDepthBook(self.max_buffer) for s in self.symbols}
        self.need_snapshot = set(self.symbols)

    def handle_message(self, raw) -> bool:
        event = parse_binance_message(raw)
        if isinstance(event, DepthDiff):
            symbol = binance_symbol(event.market)
            book = self.books.get(symbol)
            if book is None:
                raise FeedMessageError(f"depth update for unsubscribed {event.market}", "unexpected")
            try:
                if book.on_event(event):
                    self.book_times[symbol] = event.timestamp
                    self.dirty.add(symbol)
            except BookGapError as exc:
                self.resync(symbol, str(exc))
            return True
        if event.kind == "shutdown":
            log.info("binance: serverShutdown received; reconnecting")
            return False
        if event.kind == "error":
            self.counts["exchange_errors"] += 1
            log.error("binance: the exchange answered with an error: %s", event.detail)
        return True

    def resync(self, symbol: str, reason: str) -> None:
        self.counts["resyncs"] += 1
        self.counts["out_of_order"] += 1
        log.warning("binance: %s; resyncing %s from a snapshot", reason, symbol)
        self.books[symbol].reset()
        self.need_snapshot.add(symbol)
        self.dirty.discard(symbol)

    def after_receive(self) -> None:
        # A snapshot is fetched once its book has buffered at least one event, so the
        # snapshot can be matched against the stream (procedure steps 1-4).
        now = time.monotonic()
        if now < self.rest_not_before:
            return
        for symbol in [s for s in self.need_snapshot if self.books[s].buffer]:
            if now < self.snapshot_not_before.get(symbol, 0.0):
                continue
            try:
                self.load_snapshot(symbol)
            except SnapshotRefused as exc:
                self.counts["snapshot_errors"] += 1
                self.counts["snapshot_refused"] += 1
                self.rest_not_before = time.monotonic() + exc.retry_after
                self._back_off(symbol, exc.retry_after)
                log.warning("binance: snapshot for %s refused (%s); no snapshot before %.0f s", symbol, exc, exc.retry_after)
                return
            except (requests.RequestException, FeedMessageError, ValueError) as exc:
                log.warning("binance: snapshot for %s failed: %s", symbol, exc)
                self.counts["snapshot_errors"] += 1
                self._back_off(symbol)
            else:
                if symbol in self.need_snapshot:
                    self._back_off(symbol)  # stayed older than the stream
                else:
                    self.snapshot_failures.pop(symbol, None)
                    self.snapshot_not_before.pop(symbol, None)

    def _back_off(self, symbol: str, at_least: float = 0.0) -> None:
        failures = self.snapshot_failures[symbol] = self.snapshot_failures.get(symbol, 0) + 1
        wait = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** min(failures - 1, 10))
        self.snapshot_not_before[symbol] = time.monotonic() + max(wait, at_least)

    def load_snapshot(self, symbol: str) -> None:
        book = self.books[symbol]
        market = self.market(symbol)
        for _ in range(SNAPSHOT_ATTEMPTS):
            response = self.session.get(
                f"{self.rest_url}/api/v3/depth", params={"symbol": market, "limit": self.snapshot_limit}, timeout=5
            )
            if response.status_code in (418, 429):
                default = 120.0 if response.status_code == 418 else 60.0
                wait = retry_after_seconds(response.headers.get("Retry-After"), default)
                raise SnapshotRefused(f"HTTP {response.status_code}, Retry-After {wait:.0f} s", wait)
            if response.status_code != 200:
                raise FeedMessageError(f"HTTP {response.status_code}: {response.text[:200]}", "snapshot_error")
            if self.recorder is not None:
                self.recorder.write(self.exchange, response.content, kind="snapshot", market=market)
            snapshot = parse_binance_depth_snapshot(market, response.json())
            newest = book.buffer[-1].timestamp if book.buffer else None
            try:
                if book.load_snapshot(snapshot):
                    self.need_snapshot.discard(symbol)
                    self.book_times[symbol] = newest
                    self.dirty.add(symbol)
                    return
            except BookGapError as exc:
                book.reset()
                log.warning("binance: %s after snapshot; fetching again", exc)
                return
        log.warning("binance: snapshot for %s stayed older than the stream; will retry", symbol)
