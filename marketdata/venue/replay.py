"""Drive the venue from a recording of raw exchange messages instead of the market model."""

from __future__ import annotations

import asyncio
import logging

import orjson

from marketdata.exceptions import FeedMessageError
from marketdata.parsers import (
    BookSnapshot,
    DepthDiff,
    parse_binance_depth_snapshot,
    parse_binance_message,
    parse_upbit_message,
)
from marketdata.recording import read_recording

from .core import Venue

log = logging.getLogger(__name__)


def apply_record(venue: Venue, record: dict) -> bool:
    """Apply one recorded message to the venue's books; False when it carried no book data."""
    exchange, kind, data = record["exchange"], record.get("kind", "ws"), record["data"]
    try:
        if exchange == "upbit":
            events = parse_upbit_message(data)
        elif kind == "snapshot":
            events = [parse_binance_depth_snapshot(record["market"], orjson.loads(data))]
        else:
            events = [parse_binance_message(data)]
    except (FeedMessageError, orjson.JSONDecodeError) as exc:
        log.warning("replay: skipping a recorded %s message: %s", exchange, exc)
        return False
    applied = False
    for event in events:
        if isinstance(event, BookSnapshot):
            venue.set_book(exchange, event.market, event.bids, event.asks)
            applied = True
        elif isinstance(event, DepthDiff):
            venue.apply_diff(exchange, event.market, event.bids, event.asks)
            applied = True
    return applied


async def replay(venue: Venue, path: str, *, speed: float = 1.0, loop_forever: bool = False) -> int:
    """Play a recording into the venue at its recorded pace (scaled by speed); return messages applied."""
    venue.paused = True  # the recording, not the model, moves prices now
    applied = 0
    while True:
        first_t = None
        started = asyncio.get_running_loop().time()
        for record in read_recording(path):
            if first_t is None:
                first_t = record["t"]
            due = started + (record["t"] - first_t) / speed
            delay = due - asyncio.get_running_loop().time()
            if delay > 0:
                await asyncio.sleep(delay)
            applied += apply_record(venue, record)
        if not loop_forever:
            return applied
