"""Upbit feed: full top-N orderbook snapshots over /websocket/v1, replaced on every message."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from decimal import Decimal

import orjson

from marketdata.books import LevelBook
from marketdata.parsers import UPBIT, BookSnapshot, parse_upbit_message, upbit_symbol
from marketdata.records import FxRecord

from .base import TWO, FeedWorker, log

FX_MARKET = "KRW-USDT"
FX_SOURCE = "upbit"
# Upbit closes a connection idle for 120 s; a text PING gets {"status":"UP"} back.
PING_EVERY = 30.0


class UpbitFeed(FeedWorker):
    exchange = UPBIT

    def __init__(self, *args, fmt: str = "SIMPLE", **kwargs):
        super().__init__(*args, **kwargs)
        self.format = fmt
        self._last_ping = 0.0
        self._units: dict = {}  # the parser's memo of each market's last units (parse_upbit_message)

    def markets(self) -> list[str]:
        return [f"KRW-{s}" for s in self.symbols if s != "USDT"] + [FX_MARKET]

    def connect_url(self) -> str:
        return self.ws_url

    def on_connected(self) -> None:
        request = [
            {"ticket": f"kimp-{uuid.uuid4()}"},
            {"type": "orderbook", "codes": self.markets()},
            {"format": self.format},
        ]
        self.ws.send(orjson.dumps(request).decode())
        self._last_ping = time.monotonic()

    def reset_books(self) -> None:
        super().reset_books()
        self._units.clear()

    def handle_message(self, raw) -> bool:
        for event in parse_upbit_message(raw, self._units, self.depth):
            if isinstance(event, BookSnapshot):
                symbol = upbit_symbol(event.market)
                book = self.books.get(symbol)
                if book is None:
                    book = self.books[symbol] = LevelBook()
                previous = self.book_times.get(symbol)
                if previous and event.timestamp and event.timestamp < previous:
                    self.counts["out_of_order"] += 1
                    log.warning("upbit: %s snapshot older than the one held; skipped", event.market)
                    continue
                book.replace(event.bids, event.asks)
                self.book_times[symbol] = event.timestamp
                self.dirty.add(symbol)
            elif event.kind == "error":
                self.counts["exchange_errors"] += 1
                log.error("upbit: the exchange answered with an error: %s", event.detail)
        return True

    def keepalive(self) -> bool:
        now = time.monotonic()
        if now - self._last_ping >= PING_EVERY:
            self.ws.send("PING")
            self._last_ping = now
        return super().keepalive()

    def fx_record(self, symbol: str, bid: Decimal, ask: Decimal, stamp: datetime) -> FxRecord | None:
        if symbol != "USDT":
            return None
        return FxRecord(FX_SOURCE, (bid + ask) / TWO, bid, ask, stamp)
