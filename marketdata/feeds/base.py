"""The feed worker loop shared by both exchanges.

One connection, one thread: block for a message, drain whatever else the socket already holds,
then write every changed book to Redis in one pipeline and announce it. Writing per message would
cap ingest at a few thousand messages a second; a flush timer would add latency.
"""

from __future__ import annotations

import logging
import random
import select
import ssl
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import redis
import websocket

from marketdata.books import LevelBook
from marketdata.exceptions import FeedMessageError
from marketdata.realtime import RealtimeBudget
from marketdata.recording import Recorder
from marketdata.records import BookRecord, FeedStats, FxRecord, PriceRecord
from marketdata.store import REFRESH_S, WALKING_S, MarketStore

log = logging.getLogger(__name__)

TWO = Decimal(2)


class FeedWorker:
    """Keeps one exchange's books current in Redis. Subclasses speak the exchange's protocol."""

    exchange = ""
    max_batch = 2000  # messages drained before a flush, so a firehose cannot starve Redis
    # ... and at most this long: a feed that is behind flushes what it has, so no book waits in this
    # process behind a long burst (the evaluations see it a few ms after it arrived, not a burst later).
    max_drain_s = 0.005
    first_chunk = 8  # a flush of more books writes those of the coins worth walking first (flush)
    heartbeat_every = 1.0
    recv_timeout = 1.0

    def __init__(
        self,
        state: MarketStore,
        symbols: list[str],
        *,
        ws_url: str,
        rest_url: str,
        depth: int = 20,
        recorder: Recorder | None = None,
        max_backoff: float = 30.0,
        max_connection_age: float = 23.5 * 3600,
        realtime: RealtimeBudget | None = None,
    ):
        self.state = state
        self.symbols = list(symbols)
        self.ws_url = ws_url
        self.rest_url = rest_url.rstrip("/")
        self.depth = depth
        self.recorder = recorder
        self.max_backoff = max_backoff
        self.max_connection_age = max_connection_age
        self.realtime = realtime  # promoted in this feed's own thread (run), checked once per burst (step)
        self.ws: websocket.WebSocket | None = None
        self.books: dict[str, LevelBook] = {}
        self.book_times: dict[str, datetime | None] = {}
        self.tops: dict[str, tuple] = {}  # coin -> the best bid and ask levels last written (flush)
        self.marked_at: dict[str, float] = {}  # coin -> when a flush last marked it changed (monotonic)
        # coin -> its (bid, ask) in the price hash and when written: a change that moves neither rewrites
        # the book, not the price hash, until that is REFRESH_S old (its times say how fresh it is)
        self.priced: dict[str, tuple[tuple, float]] = {}
        self.dirty: set[str] = set()
        self.walking: set[str] = set()  # the coins worth walking lately (near a signal), re-read once a second
        self.counts: Counter = Counter()
        self.stop_event = threading.Event()
        self.connected_at = 0.0
        self.last_message_at = 0.0
        self._last_beat = 0.0
        self._failures = 0
        self.component = f"feed_{self.exchange}"

    # --- lifecycle -----------------------------------------------------------------------------
    def run(self) -> None:
        """Supervise run_once(): an unexpected exception restarts the loop (counted), never ends it."""
        if self.realtime is not None:
            self.realtime.start()
        while not self.stop_event.is_set():
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - the feed thread must not die
                self.counts["restarts"] += 1
                log.exception("%s: feed loop crashed; restarting", self.exchange)
                self.disconnect()
                self.stop_event.wait(self.backoff())

    def run_once(self) -> None:
        """Connect, stream and reconnect with backoff until stop() is called."""
        while not self.stop_event.is_set():
            try:
                self.connect()
                while not self.stop_event.is_set() and self.step():
                    pass
            except (websocket.WebSocketException, OSError) as exc:
                if not self.stop_event.is_set():
                    log.warning("%s: connection lost: %s", self.exchange, exc)
            except redis.RedisError as exc:
                # Books stay valid in memory; the connection is kept only if Redis returns soon.
                log.error("%s: Redis unavailable: %s", self.exchange, exc)
            finally:
                self.disconnect()
            if not self.stop_event.is_set():
                self.counts["reconnects"] += 1
                self.stop_event.wait(self.backoff())

    def stop(self) -> None:
        self.stop_event.set()
        if self.ws is not None:
            try:
                self.ws.sock and self.ws.sock.shutdown(2)
            except OSError:
                pass

    def backoff(self) -> float:
        """Exponential backoff with jitter, reset once a connection has delivered data."""
        self._failures += 1
        base = min(self.max_backoff, 0.1 * 2 ** min(self._failures - 1, 10))
        return base * (0.5 + random.random() / 2)

    def connect(self) -> None:
        self.ws = websocket.create_connection(
            self.connect_url(),
            timeout=10,
            # orjson validates UTF-8 anyway; websocket-client's own check costs ~10x the parse.
            skip_utf8_validation=True,
            enable_multithread=False,
        )
        self.ws.settimeout(self.recv_timeout)
        self.connected_at = self.last_message_at = time.monotonic()
        self.reset_books()
        self.on_connected()
        log.info("%s: %s to %s", self.exchange, "reconnected" if self.counts["reconnects"] else "connected", self.ws_url)

    def disconnect(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close(timeout=0.5)
            except (websocket.WebSocketException, OSError):
                pass
            self.ws = None

    # --- one step ------------------------------------------------------------------------------
    def step(self) -> bool:
        """Receive one burst of messages and flush it; False when the connection must be renewed."""
        try:
            raw = self.ws.recv()
        except websocket.WebSocketTimeoutException:
            raw = None
        if raw is not None:
            if raw == "" or raw == b"":
                raise websocket.WebSocketConnectionClosedException("closed by the server")
            self.last_message_at = time.monotonic()
            keep = self.handle_raw(raw)
            drained = 1
            flush_by = time.monotonic() + self.max_drain_s
            while keep and drained < self.max_batch and self._readable() and time.monotonic() < flush_by:
                keep = self.handle_raw(self.ws.recv())
                drained += 1
            if not keep:
                return False
        self.after_receive()
        self.flush()
        if self.realtime is not None:
            self.realtime.check()
        return self.keepalive()

    def _readable(self) -> bool:
        sock = self.ws.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        return bool(select.select((sock,), (), (), 0)[0])

    def handle_raw(self, raw: bytes | str) -> bool:
        """Parse and apply one message; False when the exchange asked us to reconnect."""
        self.counts["messages"] += 1
        if self.recorder is not None:
            self.recorder.write(self.exchange, raw)
        try:
            return self.handle_message(raw)
        except FeedMessageError as exc:
            self.counts[exc.kind] += 1
            log.warning("%s: skipped a message (%s): %s", self.exchange, exc.kind, exc.reason)
            return True
        except (websocket.WebSocketException, OSError, redis.RedisError):
            raise  # connection trouble: the run loop reconnects
        except Exception as exc:  # noqa: BLE001 - one bad message must never kill the feed thread
            self.counts["malformed"] += 1
            log.warning("%s: skipped a message (malformed, %s): %s", self.exchange, type(exc).__name__, exc)
            return True

    def keepalive(self) -> bool:
        now = time.monotonic()
        if now - self.connected_at > self.max_connection_age:
            log.info("%s: renewing a connection older than %.0f s", self.exchange, self.max_connection_age)
            return False
        return True

    # --- Redis ---------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write every changed book, the rate and the heartbeat in one pipeline, then announce. A burst of
        more than first_chunk books writes the coins worth walking lately (near a signal) first, in a
        round trip of their own: their tick need not wait behind the whole burst's encoding and writing."""
        now = time.monotonic()
        beat = now - self._last_beat >= self.heartbeat_every
        if not self.dirty and not beat:
            return
        received = datetime.now(UTC)
        dirty, self.dirty = self.dirty, set()
        if len(dirty) > self.first_chunk and (near := dirty & self.walking):
            self._write(near, received, now, beat=False)
            dirty -= near
        self._write(dirty, received, now, beat)

    def _write(self, symbols: set[str], received: datetime, now: float, beat: bool) -> None:
        prices, books, fx, notify, changed, deep, tops, priced, same = [], [], [], [], [], [], {}, {}, set()
        for symbol in symbols:
            book = self.books.get(symbol)
            if book is None:
                continue
            bids, asks = book.top(self.depth)
            if not bids or not asks or bids[0][0] >= asks[0][0]:
                self.counts["crossed_or_empty"] += 1
                continue
            stamp = self.book_times.get(symbol) or received
            # received_at is the local clock; a quote's age (received - stamp) is never negative.
            stamp = min(stamp, received)
            bid, ask = bids[0][0], asks[0][0]
            last = self.priced.get(symbol)
            if last is not None and last[0] == (bid, ask) and now - last[1] < REFRESH_S:
                same.add(symbol)
            else:
                priced[symbol] = ((bid, ask), now)
            prices.append(PriceRecord(self.exchange, symbol, bid, ask, (bid + ask) / TWO, stamp, received))
            books.append(BookRecord(self.exchange, symbol, bids, asks, stamp, received))
            notify.append(f"{self.exchange}:{symbol}")
            rate = self.fx_record(symbol, bid, ask, stamp)
            if rate is not None:
                fx.append(rate)
            else:
                # A coin's book: evaluate it (a rate's change waits for the next). A change below the
                # best levels is only worth it while the coin is worth walking (the store decides).
                top = tops[symbol] = (bids[0], asks[0])
                if self.tops.get(symbol) != top or now - self.marked_at.get(symbol, float("-inf")) >= REFRESH_S:
                    changed.append(symbol)
                    self.marked_at[symbol] = now
                else:
                    deep.append(symbol)
        stats = None
        # Beat only while data flows: a connected but silent feed must look dead.
        alive = self.ws is not None and now - self.last_message_at < 30
        if beat:
            self._last_beat = now
            stats = self.stats()
        walking = self.state.write_market(prices, books, fx, notify=notify, changed=changed, deep=deep,
                                          changed_at=received.timestamp(), heartbeat=self.component if beat and alive else None,
                                          stats=stats, walking_since=received.timestamp() - WALKING_S if beat else None,
                                          same_prices=same)
        if walking is not None:  # once a second, with the heartbeat
            self.walking = set(walking)
        self.priced.update(priced)
        self.tops.update(tops)  # once written: a write that failed compares the next flush with the last one written
        if prices:
            self._failures = 0

    def stats(self) -> FeedStats:
        c = self.counts
        return FeedStats(self.exchange, c["messages"], c["malformed"], c["out_of_order"], c["resyncs"],
                         c["reconnects"] + c["restarts"], int(self.ws is not None))

    # --- exchange specifics --------------------------------------------------------------------
    def connect_url(self) -> str:
        raise NotImplementedError

    def on_connected(self) -> None:
        """Subscribe, or whatever the exchange needs once the socket is open."""

    def reset_books(self) -> None:
        self.books.clear()
        self.book_times.clear()
        self.tops.clear()
        self.marked_at.clear()
        self.priced.clear()
        self.dirty.clear()

    def handle_message(self, raw: bytes | str) -> bool:
        raise NotImplementedError

    def after_receive(self) -> None:
        """Work done once per burst (e.g. fetching snapshots for books that need them)."""

    def fx_record(self, symbol: str, bid: Decimal, ask: Decimal, stamp: datetime) -> FxRecord | None:
        return None
