"""Market-data records and their encoding: what the feeds write and every layer above reads.

Records are dataclasses with Decimal money and aware UTC datetimes. Hashes store every field as
a string (Decimal via str, datetimes as ISO 8601), so nothing passes through float.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache

import orjson

Level = tuple[Decimal, Decimal]
T = typing.TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PriceRecord:
    exchange: str
    symbol: str
    bid: Decimal
    ask: Decimal
    mid: Decimal
    timestamp: datetime
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class BookRecord:
    """Top levels of one venue's book, best first, for depth-aware sizing."""

    exchange: str
    symbol: str
    bids: list[Level]
    asks: list[Level]
    timestamp: datetime
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FxRecord:
    source: str
    rate: Decimal
    bid: Decimal | None
    ask: Decimal | None
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class FeedStats:
    exchange: str
    messages: int = 0
    malformed: int = 0
    out_of_order: int = 0
    resyncs: int = 0
    reconnects: int = 0
    connected: int = 0
    timestamp: datetime = field(default_factory=utcnow)


# --- record codec (flat records <-> Redis hashes) ---------------------------------------------


def encode_value(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None:
        return ""
    return str(value)


@cache
def _field_decoders(cls: type) -> dict[str, typing.Callable[[str], object]]:
    hints = typing.get_type_hints(cls)
    decoders = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        optional = False
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            optional = len(args) != len(typing.get_args(hint))
            hint = args[0]
        base = {Decimal: Decimal, int: int, datetime: datetime.fromisoformat, str: str}.get(hint)
        if base is None:
            raise TypeError(f"{cls.__name__}.{f.name}: no codec for {hint!r}")
        if optional:
            decoders[f.name] = lambda raw, base=base: base(raw) if raw != "" else None
        else:
            decoders[f.name] = base
    return decoders


def encode_record(record: object) -> dict[str, str]:
    """Turn a record into the string mapping stored in a Redis hash."""
    return {f.name: encode_value(getattr(record, f.name)) for f in dataclasses.fields(record)}


def decode_record(cls: type[T], raw: dict) -> T | None:
    """Rebuild a record from a Redis hash; None when the key is missing or expired."""
    if not raw:
        return None
    decoders = _field_decoders(cls)
    values = {}
    for name, decode in decoders.items():
        key = name.encode() if isinstance(next(iter(raw)), bytes) else name
        if key not in raw:
            continue
        item = raw[key]
        values[name] = decode(item.decode() if isinstance(item, bytes) else item)
    return cls(**values)


def encode_sample(ts: float, value: object) -> str:
    """A time-series member (sorted sets): "<epoch seconds, ms precision>:<value as written>"."""
    return f"{ts:.3f}:{value}"


# --- book codec (a book is one JSON string: its levels are lists, not hash fields) --------------


def levels_to_json(levels: Sequence[Level]) -> list[list[str]]:
    return [[str(p), str(q)] for p, q in levels]


def levels_from_json(levels: Iterable[Sequence[str]]) -> list[Level]:
    return [(Decimal(p), Decimal(q)) for p, q in levels]


def encode_book(book: BookRecord) -> bytes:
    """Encode a book as the JSON stored under its book key."""
    return orjson.dumps(
        {
            "exchange": book.exchange,
            "symbol": book.symbol,
            "bids": levels_to_json(book.bids),
            "asks": levels_to_json(book.asks),
            "timestamp": book.timestamp.isoformat(),
            "received_at": book.received_at.isoformat() if book.received_at else None,
        }
    )


def decode_book(raw: bytes) -> BookRecord:
    """Rebuild a book from the JSON stored under its book key."""
    data = orjson.loads(raw)
    return BookRecord(
        exchange=data["exchange"],
        symbol=data["symbol"],
        bids=levels_from_json(data["bids"]),
        asks=levels_from_json(data["asks"]),
        timestamp=datetime.fromisoformat(data["timestamp"]),
        received_at=datetime.fromisoformat(data["received_at"]) if data.get("received_at") else None,
    )


# --- a book's best levels and times, for the screen (a few bytes, no JSON) ----------------------


def encode_top(book: BookRecord) -> bytes:
    """"bid|bid size|ask|ask size|timestamp|received_at" of the book's best levels (empty for a side
    without levels; times in ISO 8601, received_at empty when unknown)."""
    bid = book.bids[0] if book.bids else ("", "")
    ask = book.asks[0] if book.asks else ("", "")
    received = book.received_at.isoformat() if book.received_at else ""
    return f"{bid[0]}|{bid[1]}|{ask[0]}|{ask[1]}|{book.timestamp.isoformat()}|{received}".encode()


def decode_top(exchange: str, symbol: str, raw: bytes) -> BookRecord:
    """The book of encode_top: one level a side at most."""
    bid, bid_size, ask, ask_size, stamp, received = raw.decode().split("|")
    return BookRecord(exchange, symbol, [(Decimal(bid), Decimal(bid_size))] if bid else [],
                      [(Decimal(ask), Decimal(ask_size))] if ask else [], datetime.fromisoformat(stamp),
                      datetime.fromisoformat(received) if received else None)
