"""Turn raw Upbit and Binance messages into typed events, or say clearly why not.

Parsers tolerate unknown keys (exchanges add fields; old recordings carry removed ones) and raise
FeedMessageError for anything that would corrupt a book.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

import orjson

from .exceptions import FeedMessageError

Level = tuple[Decimal, Decimal]

UPBIT = "upbit"
BINANCE = "binance"


@dataclass(slots=True)
class DepthDiff:
    """A Binance diff-depth event: absolute quantities for levels that changed; qty 0 removes."""

    market: str
    first_id: int
    final_id: int
    bids: list[Level]
    asks: list[Level]
    timestamp: datetime | None


@dataclass(slots=True)
class BookSnapshot:
    """A full top-N book that replaces what was held (Upbit orderbook, Binance partial depth)."""

    market: str
    bids: list[Level]
    asks: list[Level]
    timestamp: datetime | None
    last_update_id: int | None = None


@dataclass(slots=True)
class ControlMessage:
    """Anything that is not market data: acks, keepalive answers, errors, shutdown notices."""

    kind: str  # "ack", "status", "error", "shutdown", "ignored"
    detail: object = None


MAX_MAGNITUDE = Decimal("1e15")  # no price or quantity on either venue comes near this
MAX_DECIMALS = 18
MAX_DIGITS = 34
MAX_TEXT = 64  # characters in a numeric string


def _loads(raw: bytes | str):
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FeedMessageError(f"not JSON: {exc}") from None


# A plain decimal text inside every bound below: what both venues send for nearly every number.
_PLAIN = re.compile(r"\d{1,15}(?:\.\d{1,18})?")
_MAX_INT = 10**15


# What the fast path below answered, by the value sent: a book's prices and sizes repeat from frame to
# frame, so most numbers are a dict look-up. Strings and floats are kept apart (1 == 1.0 as keys),
# and only positive floats are kept (-0.0 == 0.0 as keys, but not as text).
_TEXTS: dict[str, Decimal] = {}
_FLOATS: dict[float, Decimal] = {}
_MEMO_MAX = 100_000


def _number(value, what: str) -> Decimal:
    """A non-negative finite number within MAX_MAGNITUDE and MAX_DECIMALS, as Decimal; else the typed error.

    The common shapes are checked on the text or the native value first (a feed parses some sixty
    of these per message), and remembered; anything else takes the general path, which names what
    is wrong.
    """
    kind = type(value)
    if kind is str:
        out = _TEXTS.get(value)
        if out is not None:
            return out
        if len(value) <= 34 and _PLAIN.fullmatch(value):
            if len(_TEXTS) >= _MEMO_MAX:
                _TEXTS.clear()
            out = _TEXTS[value] = Decimal(value)
            return out
    elif kind is float:
        out = _FLOATS.get(value)
        if out is not None:
            return out
        if 0 <= value < 1e15:  # NaN and the infinities fail both
            text = repr(value)
            if "e" not in text and len(text) - text.find(".") - 1 <= MAX_DECIMALS:
                out = Decimal(text)
                if value > 0:
                    if len(_FLOATS) >= _MEMO_MAX:
                        _FLOATS.clear()
                    _FLOATS[value] = out
                return out
    elif kind is int and 0 <= value < _MAX_INT:
        return Decimal(value)
    return _number_checked(value, what)


def _number_checked(value, what: str) -> Decimal:
    # Binance sends strings; Upbit sends JSON numbers, which orjson gives as int or float.
    # str(float) is the shortest text that reads back as the same float, i.e. the JSON text
    # the exchange sent for any price with up to 15 significant digits.
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise FeedMessageError(f"{what} is too long a number: {value[:40]!r}...")
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise FeedMessageError(f"{what} is not a number: {value!r}") from None
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise FeedMessageError(f"{what} is not a number: {value!r}")
    else:
        if isinstance(value, int) and abs(value) >= MAX_MAGNITUDE:
            raise FeedMessageError(f"{what} is out of range: {str(value)[:40]!r}")
        number = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
    if not number.is_finite() or number < 0 or number >= MAX_MAGNITUDE:
        raise FeedMessageError(f"{what} is out of range: {str(value)[:40]!r}")
    # Exponent tricks (1E-999999) and absurd precision would make every later sum or quantize slow
    # or raise: a level price or quantity has at most MAX_DECIMALS places.
    exponent = number.as_tuple().exponent
    if number and (exponent < -MAX_DECIMALS or len(number.as_tuple().digits) > MAX_DIGITS):
        raise FeedMessageError(f"{what} has too many digits: {str(value)[:40]!r}")
    return number


def _price(value, what: str) -> Decimal:
    number = _number(value, what)
    if not number:
        raise FeedMessageError(f"{what} is not positive: {str(value)[:40]!r}")
    return number


def _binance_levels(levels, what: str) -> list[Level]:
    if not isinstance(levels, list):
        raise FeedMessageError(f"{what} is not a list")
    out = []
    for level in levels:
        # A 2018 capture has ["p", "q", []]: extras are ignored.
        if not isinstance(level, list) or len(level) < 2:
            raise FeedMessageError(f"{what} level is malformed: {level!r}")
        out.append((_price(level[0], f"{what} price"), _number(level[1], f"{what} quantity")))
    return out


MAX_FUTURE = timedelta(seconds=5)  # clock skew tolerated between the exchange and us


def ms_to_datetime(value, now: datetime | None = None) -> datetime | None:
    """Exchange epoch time (ms, or µs with Binance's timeUnit=MICROSECOND) as aware UTC.

    Absent -> None. A time more than MAX_FUTURE ahead of the local clock is FeedMessageError:
    one bad stamp must not freeze a book (every later one "older") or give a negative quote age
    that passes the stale check.
    """
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        if isinstance(value, float) and value.is_integer() and 0 < value < 1e17:
            value = int(value)
        else:
            raise FeedMessageError(f"timestamp is not an integer: {str(value)[:40]!r}")
    if value <= 0 or value >= 10**17:
        raise FeedMessageError(f"timestamp out of range: {value!r}")
    seconds = value / 1_000_000 if value > 10**14 else value / 1000  # µs or ms
    now = now or datetime.now(UTC)
    try:
        stamp = datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        raise FeedMessageError(f"timestamp out of range: {value!r}") from None
    if stamp > now + MAX_FUTURE:
        raise FeedMessageError(f"timestamp {stamp.isoformat()} is in the future")
    # An old stamp is safe (the quote just looks stale); old recordings must still replay.
    return stamp


# --- Binance ---------------------------------------------------------------------------------


def parse_binance_message(raw: bytes | str) -> DepthDiff | BookSnapshot | ControlMessage:
    """Parse one Binance market-stream message, raw or in the combined-stream wrapper."""
    msg = _loads(raw)
    if not isinstance(msg, dict):
        raise FeedMessageError(f"unexpected {type(msg).__name__} message")
    stream = None
    if "stream" in msg and "data" in msg:
        stream = msg["stream"]
        msg = msg["data"]
        if not isinstance(msg, dict):
            raise FeedMessageError(f"stream {stream!r} carries a non-object payload")
    event = msg.get("e")
    if not isinstance(event, str | None):
        raise FeedMessageError(f"event type is not a string: {str(event)[:40]!r}")
    if event == "depthUpdate":
        return _binance_diff(msg)
    if event == "serverShutdown":
        return ControlMessage("shutdown", msg)
    if "lastUpdateId" in msg and "bids" in msg:
        # Partial depth has no symbol: only the combined stream name says which one it is.
        if not isinstance(stream, str) or "@" not in stream:
            raise FeedMessageError("partial depth without a stream name")
        return parse_binance_depth_snapshot(stream.split("@", 1)[0].upper(), msg)
    if "result" in msg and "id" in msg:
        return ControlMessage("ack", msg)
    if "code" in msg and "msg" in msg:
        return ControlMessage("error", msg)
    if event in {"trade", "aggTrade"} or ("u" in msg and "b" in msg and "a" in msg and "s" in msg):
        return ControlMessage("ignored", msg)
    raise FeedMessageError(f"unknown Binance message: {str(msg)[:120]}")


def _binance_diff(msg: dict) -> DepthDiff:
    try:
        market = msg["s"]
        first_id = msg["U"]
        final_id = msg["u"]
    except KeyError as exc:
        raise FeedMessageError(f"depthUpdate without {exc.args[0]!r}") from None
    if not isinstance(first_id, int) or not isinstance(final_id, int) or first_id > final_id:
        raise FeedMessageError(f"depthUpdate has bad update ids U={first_id!r} u={final_id!r}")
    if not isinstance(market, str) or not market:
        raise FeedMessageError("depthUpdate has no symbol")
    return DepthDiff(
        market=market.upper(),
        first_id=first_id,
        final_id=final_id,
        bids=_binance_levels(msg.get("b", []), "bid"),
        asks=_binance_levels(msg.get("a", []), "ask"),
        timestamp=ms_to_datetime(msg.get("E")),
    )


def parse_binance_depth_snapshot(market: str, payload) -> BookSnapshot:
    """Parse a REST /api/v3/depth answer (or a partial-depth stream payload)."""
    if not isinstance(payload, dict):
        raise FeedMessageError("depth snapshot is not an object")
    last = payload.get("lastUpdateId")
    if not isinstance(last, int) or isinstance(last, bool):
        raise FeedMessageError(f"depth snapshot has bad lastUpdateId {last!r}")
    return BookSnapshot(
        market=market.upper(),
        bids=_binance_levels(payload.get("bids"), "bid"),
        asks=_binance_levels(payload.get("asks"), "ask"),
        timestamp=None,
        last_update_id=last,
    )


# --- Upbit -----------------------------------------------------------------------------------

_UPBIT_ALIASES = {
    "type": "ty",
    "code": "cd",
    "timestamp": "tms",
    "orderbook_units": "obu",
    "ask_price": "ap",
    "bid_price": "bp",
    "ask_size": "as",
    "bid_size": "bs",
}


_UNIT_FIELDS = ("ask_size", "bid_size", "ask_price", "bid_price")
_UNIT_DEFAULT = tuple((name, name) for name in _UNIT_FIELDS)
_UNIT_SIMPLE = tuple((_UPBIT_ALIASES[name], name) for name in _UNIT_FIELDS)


def _upbit_get(obj: dict, name: str, default=None):
    if name in obj:
        return obj[name]
    return obj.get(_UPBIT_ALIASES.get(name, name), default)


def parse_upbit_message(raw: bytes | str, memo: dict | None = None, depth: int | None = None) -> list[BookSnapshot | ControlMessage]:
    """Parse one Upbit WebSocket frame (DEFAULT, SIMPLE or the *_LIST formats).

    memo (a dict the caller keeps per connection): each market's last units and the levels parsed
    from them. Upbit sends the whole book on every change, and most units are as they were: a unit
    equal to the one at the same place last time gives the same levels without parsing it again.
    depth: read only the best `depth` units (a feed that keeps 20 levels need not read 30).
    """
    if raw in (b"PING", "PING"):
        return [ControlMessage("ignored")]
    msg = _loads(raw)
    items = msg if isinstance(msg, list) else [msg]
    return [_upbit_item(item, memo, depth) for item in items]


def _upbit_unit(unit, first, code: str) -> tuple[dict, Level | None, Level | None]:
    """(the unit, its ask level, its bid level); a side with a zero size has no level."""
    if not isinstance(unit, dict):
        raise FeedMessageError(f"orderbook {code} unit is malformed")
    ask_size, bid_size, ask_price, bid_price = (
        value if (value := unit.get(key)) is not None else _upbit_get(unit, name) for key, name in first)
    ask_size = _number(ask_size, "ask_size")
    bid_size = _number(bid_size, "bid_size")
    # A shallow book pads with zero-size units; they are not levels.
    return (unit, (_price(ask_price, "ask_price"), ask_size) if ask_size else None,
            (_price(bid_price, "bid_price"), bid_size) if bid_size else None)


def _upbit_item(msg, memo: dict | None = None, depth: int | None = None) -> BookSnapshot | ControlMessage:
    if not isinstance(msg, dict):
        raise FeedMessageError(f"unexpected {type(msg).__name__} item")
    if "error" in msg:
        return ControlMessage("error", msg["error"])
    if "status" in msg:
        return ControlMessage("status", msg["status"])
    kind = _upbit_get(msg, "type")
    if not isinstance(kind, str):
        raise FeedMessageError(f"Upbit message type is not a string: {str(kind)[:40]!r}")
    if kind != "orderbook":
        if kind in {"ticker", "trade"}:
            return ControlMessage("ignored", msg)
        raise FeedMessageError(f"unknown Upbit message type {kind!r}")
    code = _upbit_get(msg, "code") or msg.get("mk") or msg.get("market")
    if not isinstance(code, str) or "-" not in code:
        raise FeedMessageError(f"orderbook has bad code {code!r}")
    units = _upbit_get(msg, "orderbook_units")
    if not isinstance(units, list):
        raise FeedMessageError(f"orderbook {code} has no units")
    if depth is not None:
        units = units[:depth]
    bids: list[Level] = []
    asks: list[Level] = []
    # A SIMPLE frame's units use the short names: look those up first (sixty lookups a frame).
    first = _UNIT_SIMPLE if "obu" in msg else _UNIT_DEFAULT
    previous = memo.get(code, ()) if memo is not None else ()
    parsed = []
    for i, unit in enumerate(units):
        known = previous[i] if i < len(previous) else None
        levels = known if known is not None and known[0] == unit else _upbit_unit(unit, first, code)
        parsed.append(levels)
        if levels[1] is not None:
            asks.append(levels[1])
        if levels[2] is not None:
            bids.append(levels[2])
    bid_prices = [price for price, _ in bids]
    ask_prices = [price for price, _ in asks]
    if not all(map(operator.gt, bid_prices, bid_prices[1:])) or not all(map(operator.lt, ask_prices, ask_prices[1:])):
        raise FeedMessageError(f"orderbook {code} levels are out of order")
    if bids and asks and bids[0][0] >= asks[0][0]:
        raise FeedMessageError(f"orderbook {code} is crossed: bid {bids[0][0]} >= ask {asks[0][0]}")
    snapshot = BookSnapshot(market=code.split(".", 1)[0], bids=bids, asks=asks,
                            timestamp=ms_to_datetime(_upbit_get(msg, "timestamp")))
    if memo is not None:
        memo[code] = parsed
    return snapshot


def upbit_symbol(market: str) -> str:
    """KRW-BTC -> BTC."""
    return market.split("-", 1)[1]


def binance_symbol(market: str, quote: str = "USDT") -> str:
    """BTCUSDT -> BTC."""
    return market[: -len(quote)] if market.endswith(quote) else market
