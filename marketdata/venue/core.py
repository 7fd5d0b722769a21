"""The venue's state: books per dialect, connected clients, the price driver and fault switches.

One asyncio loop owns everything here; the dialect modules (upbit.py, binance.py) only read it
and render payloads. Order entry (matching against these books) plugs in beside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from aiohttp import WSMsgType, web

from .market import USDT, MarketModel

log = logging.getLogger(__name__)

Level = tuple[Decimal, Decimal]

# A client that cannot keep up is cut off, as the exchanges do, rather than slowing the others.
MAX_CLIENT_BACKLOG = 50_000
# A client's writer sends at most this many queued messages in one write, and waits while more than
# WRITE_HIGH_WATER bytes are still unsent to it.
WRITE_BATCH = 256
WRITE_HIGH_WATER = 1 << 20


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def now_us() -> int:
    return time.time_ns() // 1_000


class VenueBook:
    """One market's book on one venue, with a Binance-style update id."""

    __slots__ = ("market", "bids", "asks", "update_id", "timestamp_ms")

    def __init__(self, market: str, update_id: int = 1_000_000):
        self.market = market
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.update_id = update_id
        self.timestamp_ms = now_ms()

    def set_levels(self, bids: list[Level], asks: list[Level]) -> tuple[list[Level], list[Level]]:
        """Replace the book; return the changed levels (absolute quantities, 0 = removed)."""
        changed = []
        for side, new in ((self.bids, bids), (self.asks, asks)):
            target = dict(new)
            diff = [(p, Decimal(0)) for p in side if p not in target]
            diff += [(p, q) for p, q in target.items() if side.get(p) != q]
            side.clear()
            side.update(target)
            changed.append(diff)
        self.timestamp_ms = now_ms()
        return changed[0], changed[1]

    def apply(self, bids: list[Level], asks: list[Level]) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, qty in levels:
                if qty:
                    side[price] = qty
                else:
                    side.pop(price, None)
        self.timestamp_ms = now_ms()

    def top(self, depth: int) -> tuple[list[Level], list[Level]]:
        bids = heapq.nlargest(depth, self.bids)
        asks = heapq.nsmallest(depth, self.asks)
        return [(p, self.bids[p]) for p in bids], [(p, self.asks[p]) for p in asks]


class Connection:
    """A connected WebSocket client with its own outgoing queue and writer task."""

    # Upbit sends data in binary frames, Binance in text frames.
    opcode = WSMsgType.BINARY

    def __init__(self, ws: web.WebSocketResponse, venue: Venue, transport: asyncio.Transport | None = None):
        """transport: the connection's (request.transport): the messages queued while the writer was
        away are then written in one call, their frames built here (see _send)."""
        self.ws = ws
        self.venue = venue
        self.transport = transport
        self.queue: asyncio.Queue = asyncio.Queue()
        self.opened = time.monotonic()
        self.writer = asyncio.get_running_loop().create_task(self._write())

    def send(self, payload: bytes | str) -> None:
        if self.queue.qsize() > MAX_CLIENT_BACKLOG:
            log.warning("venue: dropping a client that fell %d messages behind", self.queue.qsize())
            self.close()
            return
        self.queue.put_nowait(payload)

    def close(self) -> None:
        self.queue.put_nowait(None)

    async def _write(self) -> None:
        try:
            while True:
                batch = [await self.queue.get()]
                while batch[-1] is not None and len(batch) < WRITE_BATCH and not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                closing = batch[-1] is None
                await self._send(batch[:-1] if closing else batch)
                if closing:
                    break
        except (ConnectionResetError, RuntimeError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await self.ws.close()

    async def _send(self, payloads: list[bytes | str]) -> None:
        """Write the payloads in order: a frame each, all in one write to the socket (a system call and
        a frame header per message dominated the venue's CPU at thousands of messages a second)."""
        if not payloads:
            return
        if self.venue.faults.delay or self.transport is None or self.ws.compress:
            for payload in payloads:  # each delayed on its own; or deflate, negotiated: aiohttp's writer
                if self.venue.faults.delay:
                    await asyncio.sleep(self.venue.faults.delay)
                if isinstance(payload, str):
                    await self.ws.send_str(payload)
                else:
                    await self.ws.send_frame(payload, self.opcode)
            return
        if self.transport.is_closing():
            raise ConnectionResetError("the client's connection is closing")
        self.transport.write(b"".join(frame(payload, self.opcode) for payload in payloads))
        while self.transport.get_write_buffer_size() > WRITE_HIGH_WATER and not self.transport.is_closing():
            await asyncio.sleep(0.005)  # a slow reader: its backlog waits in the queue (MAX_CLIENT_BACKLOG)


def frame(payload: bytes | str, opcode: int) -> bytes:
    """An unmasked (server to client), unfragmented WebSocket frame (RFC 6455, 5.2): text for a str."""
    if isinstance(payload, str):
        payload, opcode = payload.encode(), WSMsgType.TEXT
    size = len(payload)
    first = 0x80 | opcode  # FIN
    if size < 126:
        head = bytes((first, size))
    elif size < 65536:
        head = struct.pack("!BBH", first, 126, size)
    else:
        head = struct.pack("!BBQ", first, 127, size)
    return head + payload


@dataclass
class Faults:
    """Switches tests and demos flip to make the venue misbehave on purpose."""

    delay: float = 0.0
    rest_delay: float = 0.0  # order entry answers this late, after the order has taken effect
    stopped: set[str] = field(default_factory=set)  # base symbols no longer published
    skip_update_id: set[str] = field(default_factory=set)  # Binance markets whose next diff skips ids
    rules: list = field(default_factory=list)  # per-endpoint FaultRules (faults.py), first match wins
    clock_offset_ms: int = 0  # shifts the venue's clock for signed-request checks and /api/v3/time


class Venue:
    """Both exchanges' market state, driven by the model (or a replay) on a fixed step."""

    def __init__(self, model: MarketModel | None = None, *, step_hz: float = 10.0, ping_interval: float = 20.0,
                 churn_per_s: float = 0.0, seed: int = 7):
        self.model = model or MarketModel()
        self.step_hz = step_hz
        # Book updates per second (both venues together) on top of the model's steps: a few levels'
        # sizes change, as most real depth updates do, without rebuilding the ladders (benchmarks).
        self.churn_per_s = churn_per_s
        self.churn_rng = random.Random(f"churn-{seed}")
        self.ping_interval = ping_interval
        self.faults = Faults()
        self.upbit_books: dict[str, VenueBook] = {}
        self.binance_books: dict[str, VenueBook] = {}
        self.upbit_clients: set = set()
        self.binance_clients: set = set()
        self.trade_id = 1
        self.upbit_tickers: dict[str, dict] = {}
        self.market_cautions: dict[str, set[str]] = {}
        # Listeners called after each step with (exchange, market, changed_bids, changed_asks).
        self.listeners: list[Callable] = []
        self._driver: asyncio.Task | None = None
        self._churner: asyncio.Task | None = None
        self.paused = False
        self._sync_from_model(publish=False)

    def clock_ms(self) -> int:
        """The venue's notion of now (ms), shifted by the clock_offset fault."""
        return now_ms() + self.faults.clock_offset_ms

    # --- markets ---------------------------------------------------------------------------
    @property
    def coins(self):
        return [state.coin for state in self.model.coins.values()]

    def upbit_markets(self) -> list[str]:
        # BNB is Binance's fee coin: Upbit lists no KRW-BNB market, so it is never a pair's coin.
        return [f"KRW-{c.symbol}" for c in self.coins if c.symbol != "BNB"] + [f"KRW-{USDT}"]

    def binance_markets(self) -> list[str]:
        return [f"{c.symbol}{USDT}" for c in self.coins]

    def binance_coin(self, market: str):
        state = self.model.coins.get(market[: -len(USDT)]) if market.endswith(USDT) else None
        return state.coin if state else None

    # --- the driver ------------------------------------------------------------------------
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._driver = loop.create_task(self._drive())
        if self.churn_per_s > 0:
            self._churner = loop.create_task(self._churn())

    async def stop(self) -> None:
        for task in (self._driver, self._churner):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        clients = list(self.upbit_clients | self.binance_clients)
        for client in clients:
            client.close()
        if clients:
            _done, pending = await asyncio.wait([c.writer for c in clients], timeout=1.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)

    async def _drive(self) -> None:
        interval = 1.0 / self.step_hz
        next_at = time.monotonic()
        while True:
            started, next_at = next_at, next_at + interval
            if not self.paused:
                try:
                    self.model.step(interval)
                    updates = self._model_updates()
                except Exception:  # the venue must outlive a bad step
                    log.exception("venue: step failed")
                    updates = []
                # Spread the markets' updates over the step, as on a real exchange, instead of
                # sending every book in the same millisecond.
                gap = interval / max(1, len(updates))
                for i, update in enumerate(updates):
                    if self.paused:
                        break
                    self._publish_update(update)
                    delay = started + (i + 1) * gap - time.monotonic()
                    if delay > 0.001:
                        await asyncio.sleep(delay)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _churn(self) -> None:
        """Change one level's size in one book at a time, churn_per_s times a second in all, the
        markets taken in a shuffled round (both venues, every coin, each with its own book)."""
        rng = self.churn_rng
        markets = [("upbit", m) for m in self.upbit_books] + [("binance", m) for m in self.binance_books]
        rng.shuffle(markets)
        interval, sent, started = 0.002, 0, time.monotonic()
        while True:
            await asyncio.sleep(interval)
            due = int((time.monotonic() - started) * self.churn_per_s) - sent
            for _ in range(max(0, due)):
                exchange, market = markets[sent % len(markets)]
                sent += 1
                if self.paused or market.split("-")[-1].removesuffix(USDT) in self.faults.stopped:
                    continue
                books = self.upbit_books if exchange == "upbit" else self.binance_books
                book = books[market]
                side = book.bids if rng.random() < 0.5 else book.asks
                if not side:
                    continue
                # One of the top five levels: where a real book changes most.
                best = heapq.nlargest(5, side) if side is book.bids else heapq.nsmallest(5, side)
                price = best[min(len(best) - 1, int(rng.random() * 5))]
                qty = (side[price] * Decimal(repr(round(rng.uniform(0.7, 1.3), 3)))).quantize(side[price]) or side[price]
                change = [(price, qty)]
                try:
                    book.apply(change if side is book.bids else [], change if side is book.asks else [])
                    self.publish(exchange, book, change if side is book.bids else [], change if side is book.asks else [])
                except Exception:
                    log.exception("venue: churning %s %s failed", exchange, market)

    def _model_updates(self) -> list[tuple]:
        model = self.model
        updates = [(f"KRW-{USDT}", "upbit", model.usdt_bids, model.usdt_asks, USDT)]
        for symbol, state in model.coins.items():
            updates.append((f"{symbol}{USDT}", "binance", state.binance_bids, state.binance_asks, symbol))
            updates.append((f"KRW-{symbol}", "upbit", state.upbit_bids, state.upbit_asks, symbol))
        return updates

    def _publish_update(self, update: tuple) -> None:
        market, exchange, bids, asks, symbol = update
        try:
            self.set_book(exchange, market, bids, asks, publish=symbol not in self.faults.stopped)
        except Exception:
            log.exception("venue: publishing %s %s failed", exchange, market)

    def _sync_from_model(self, *, publish: bool) -> None:
        for market, exchange, bids, asks, symbol in self._model_updates():
            self.set_book(exchange, market, bids, asks, publish=publish and symbol not in self.faults.stopped)

    def set_book(self, exchange: str, market: str, bids: list[Level], asks: list[Level], *, publish: bool = True) -> None:
        """Replace a market's book and tell subscribers what changed."""
        books = self.upbit_books if exchange == "upbit" else self.binance_books
        book = books.get(market)
        if book is None:
            book = books[market] = VenueBook(market)
        changed_bids, changed_asks = book.set_levels(bids, asks)
        if publish:
            self.publish(exchange, book, changed_bids, changed_asks)

    def apply_diff(self, exchange: str, market: str, bids: list[Level], asks: list[Level], *, publish: bool = True) -> None:
        """Change some levels of a market's book (a replayed Binance diff)."""
        books = self.upbit_books if exchange == "upbit" else self.binance_books
        book = books.setdefault(market, VenueBook(market))
        book.apply(bids, asks)
        if publish:
            self.publish(exchange, book, bids, asks)

    def publish(self, exchange: str, book: VenueBook, changed_bids: list[Level], changed_asks: list[Level]) -> None:
        for listener in self.listeners:
            listener(exchange, book, changed_bids, changed_asks)

    # --- fault switches (called on the venue's loop) ---------------------------------------
    def drop_connections(self, exchange: str | None = None) -> int:
        clients = []
        if exchange in (None, "upbit"):
            clients += list(self.upbit_clients)
        if exchange in (None, "binance"):
            clients += list(self.binance_clients)
        for client in clients:
            client.close()
        return len(clients)

    def set_delay(self, seconds: float) -> None:
        self.faults.delay = max(0.0, seconds)

    def stop_symbol(self, symbol: str) -> None:
        self.faults.stopped.add(symbol)

    def resume_symbol(self, symbol: str) -> None:
        self.faults.stopped.discard(symbol)

    def skip_update_id(self, symbol: str) -> None:
        self.faults.skip_update_id.add(f"{symbol}{USDT}")

    def send_malformed(self, exchange: str | None = None) -> int:
        clients = []
        if exchange in (None, "upbit"):
            clients += list(self.upbit_clients)
        if exchange in (None, "binance"):
            clients += list(self.binance_clients)
        for client in clients:
            client.send(b'{"stream":"btcusdt@depth","data":{"e":"depthUpdate","b":[["1","x"')
        return len(clients)

    def set_caution(self, symbol: str, flags: list[str]) -> None:
        self.market_cautions[f"KRW-{symbol}"] = set(flags)

    def clear_faults(self) -> None:
        self.faults = Faults()
