"""Redis hot state: the one module that knows every key name, TTL and record encoding (SPEC §4).

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
import redis

PREFIX = "arbitrage"

TTL_PRICE = 60
TTL_BOOK = 60
TTL_FX = 60
TTL_SIGNAL = 300
TTL_ORDER = 86400
TTL_POSITION = 86400
TTL_EXECUTION = 86400
TTL_METRICS = 300
TTL_HEARTBEAT = 60
TTL_FEED_STATS = 60

# Pub/sub channel on which feed workers announce which books changed in one flush.
TICKS_CHANNEL = f"{PREFIX}:ticks"

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
class SignalRecord:
    symbol: str
    buy_exchange: str
    sell_exchange: str
    buy_price: Decimal
    sell_price: Decimal
    spread: Decimal
    spread_pct: Decimal
    timestamp: datetime
    quantity: Decimal | None = None
    net_spread_pct: Decimal | None = None


@dataclass(frozen=True, slots=True)
class OrderRecord:
    order_id: str
    exchange: str
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    status: str
    filled_quantity: Decimal
    fill_rate: Decimal
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PositionRecord:
    symbol: str
    quantity: Decimal
    entry_price: Decimal
    current_price: Decimal
    side: str
    pnl: Decimal
    pnl_pct: Decimal
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    symbol: str
    buy_order_id: str
    sell_order_id: str
    buy_price: Decimal
    sell_price: Decimal
    quantity: Decimal
    gross_pnl: Decimal
    net_pnl: Decimal
    fees: Decimal
    pnl_pct: Decimal
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class MetricsRecord:
    total_balance: Decimal
    available_balance: Decimal
    positions_count: int
    orders_count: int
    daily_loss: Decimal
    total_loss: Decimal
    trades_today: int
    timestamp: datetime = field(default_factory=utcnow)


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


# --- encoding ------------------------------------------------------------------------------


def _encode_value(value: object) -> str:
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
    return {f.name: _encode_value(getattr(record, f.name)) for f in dataclasses.fields(record)}


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


def _levels_to_json(levels: Sequence[Level]) -> list[list[str]]:
    return [[str(p), str(q)] for p, q in levels]


def _levels_from_json(levels: Iterable[Sequence[str]]) -> list[Level]:
    return [(Decimal(p), Decimal(q)) for p, q in levels]


# --- the manager -----------------------------------------------------------------------------


class StateManager:
    """Typed reads and writes of the hot state; the only place key strings are built."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._write_books = client.register_script(self._WRITE_BOOKS)

    @classmethod
    def from_url(cls, url: str) -> StateManager:
        return cls(redis.Redis.from_url(url, health_check_interval=30, socket_timeout=5))

    # keys
    @staticmethod
    def price_key(exchange: str, symbol: str) -> str:
        return f"{PREFIX}:prices:{exchange}:{symbol}"

    @staticmethod
    def book_key(exchange: str, symbol: str) -> str:
        return f"{PREFIX}:book:{exchange}:{symbol}"

    @staticmethod
    def fx_key(source: str) -> str:
        return f"{PREFIX}:fx:{source}"

    @staticmethod
    def signal_key(symbol: str) -> str:
        return f"{PREFIX}:signal:{symbol}"

    @staticmethod
    def order_key(order_id: str) -> str:
        return f"{PREFIX}:orders:{order_id}"

    @staticmethod
    def position_key(symbol: str) -> str:
        return f"{PREFIX}:positions:{symbol}"

    @staticmethod
    def execution_key(symbol: str, timestamp: datetime) -> str:
        return f"{PREFIX}:execution:{symbol}:{timestamp.isoformat()}"

    @staticmethod
    def metrics_key() -> str:
        return f"{PREFIX}:metrics:live"

    @staticmethod
    def heartbeat_key(component: str) -> str:
        return f"{PREFIX}:heartbeat:{component}"

    @staticmethod
    def feed_stats_key(exchange: str) -> str:
        return f"{PREFIX}:feedstats:{exchange}"

    @staticmethod
    def _index_key(kind: str) -> str:
        return f"{PREFIX}:index:{kind}"

    # prices and books (the feed's hot path: one round trip per flush) -------------------------
    # One script call writes every changed book and announces them: a command per key would
    # cost the feed more in client-side packing and parsing than everything else it does.
    _WRITE_BOOKS = """
    local ttl_price, ttl_book = ARGV[1], ARGV[2]
    local n = #KEYS / 2
    for i = 0, n - 1 do
      local a = 4 + i * 8
      local price_key = KEYS[2 * i + 1]
      redis.call('HSET', price_key, 'exchange', ARGV[a], 'symbol', ARGV[a + 1], 'bid', ARGV[a + 2],
                 'ask', ARGV[a + 3], 'mid', ARGV[a + 4], 'timestamp', ARGV[a + 5], 'received_at', ARGV[a + 6])
      redis.call('EXPIRE', price_key, ttl_price)
      if ARGV[a + 7] ~= '' then
        redis.call('SET', KEYS[2 * i + 2], ARGV[a + 7], 'EX', ttl_book)
      end
    end
    if ARGV[3] ~= '' then
      redis.call('PUBLISH', ARGV[3], ARGV[#ARGV])
    end
    return n
    """

    def write_market(
        self,
        prices: Iterable[PriceRecord],
        books: Iterable[BookRecord] = (),
        fx: Iterable[FxRecord] = (),
        *,
        notify: Sequence[str] = (),
        heartbeat: str | None = None,
        stats: FeedStats | None = None,
    ) -> None:
        """Write prices (each with its book), rates, heartbeat and stats in one round trip.

        `books` must pair with `prices` one to one; `notify` is published after the writes, so a
        subscriber that hears it can read the new values.
        """
        prices, books = list(prices), list(books)
        if books and len(books) != len(prices):
            raise ValueError("write_market: books must pair one to one with prices")
        pipe = self.redis.pipeline(transaction=False)
        if prices:
            keys, args = [], [TTL_PRICE, TTL_BOOK, TICKS_CHANNEL if notify else ""]
            for i, price in enumerate(prices):
                keys.append(self.price_key(price.exchange, price.symbol))
                keys.append(self.book_key(price.exchange, price.symbol))
                received = price.received_at.isoformat() if price.received_at else ""
                args += [price.exchange, price.symbol, str(price.bid), str(price.ask), str(price.mid),
                         price.timestamp.isoformat(), received, self.encode_book(books[i]) if books else b""]
            if notify:
                args.append(orjson.dumps(list(notify)))
            self._write_books(keys=keys, args=args, client=pipe)
        elif notify:
            pipe.publish(TICKS_CHANNEL, orjson.dumps(list(notify)))
        for rate in fx:
            key = self.fx_key(rate.source)
            pipe.hset(key, mapping=encode_record(rate))
            pipe.expire(key, TTL_FX)
        if heartbeat:
            self._queue_heartbeat(pipe, heartbeat)
        if stats:
            key = self.feed_stats_key(stats.exchange)
            pipe.hset(key, mapping=encode_record(stats))
            pipe.expire(key, TTL_FEED_STATS)
        pipe.execute()

    @staticmethod
    def encode_book(book: BookRecord) -> bytes:
        return orjson.dumps(
            {
                "exchange": book.exchange,
                "symbol": book.symbol,
                "bids": _levels_to_json(book.bids),
                "asks": _levels_to_json(book.asks),
                "timestamp": book.timestamp.isoformat(),
                "received_at": book.received_at.isoformat() if book.received_at else None,
            }
        )

    def get_price(self, exchange: str, symbol: str) -> PriceRecord | None:
        return decode_record(PriceRecord, self.redis.hgetall(self.price_key(exchange, symbol)))

    def get_book(self, exchange: str, symbol: str) -> BookRecord | None:
        raw = self.redis.get(self.book_key(exchange, symbol))
        if raw is None:
            return None
        data = orjson.loads(raw)
        return BookRecord(
            exchange=data["exchange"],
            symbol=data["symbol"],
            bids=_levels_from_json(data["bids"]),
            asks=_levels_from_json(data["asks"]),
            timestamp=datetime.fromisoformat(data["timestamp"]),
            received_at=datetime.fromisoformat(data["received_at"]) if data.get("received_at") else None,
        )

    def get_fx(self, source: str) -> FxRecord | None:
        return decode_record(FxRecord, self.redis.hgetall(self.fx_key(source)))

    def set_fx(self, rate: FxRecord) -> None:
        self.write_market((), fx=(rate,))

    def write_price(self, price: PriceRecord, book: BookRecord | None = None) -> None:
        """Write one quote (and its book) outside the feed, e.g. a fixed-rate source or a test."""
        self.write_market([price], [book] if book else [])

    def get_feed_stats(self, exchange: str) -> FeedStats | None:
        return decode_record(FeedStats, self.redis.hgetall(self.feed_stats_key(exchange)))

    # signals --------------------------------------------------------------------------------
    def save_signal(self, signal: SignalRecord) -> None:
        self._save_indexed("signals", self.signal_key(signal.symbol), signal.symbol, signal, TTL_SIGNAL)

    def get_signal(self, symbol: str) -> SignalRecord | None:
        return decode_record(SignalRecord, self.redis.hgetall(self.signal_key(symbol)))

    def list_signals(self) -> list[SignalRecord]:
        return self._list_indexed("signals", SignalRecord, self.signal_key, TTL_SIGNAL)

    # orders ---------------------------------------------------------------------------------
    def save_order(self, order: OrderRecord) -> None:
        self._save_indexed("orders", self.order_key(order.order_id), order.order_id, order, TTL_ORDER)

    def get_order(self, order_id: str) -> OrderRecord | None:
        return decode_record(OrderRecord, self.redis.hgetall(self.order_key(order_id)))

    def list_orders(self) -> list[OrderRecord]:
        return self._list_indexed("orders", OrderRecord, self.order_key, TTL_ORDER)

    # positions ------------------------------------------------------------------------------
    def save_position(self, position: PositionRecord) -> None:
        self._save_indexed("positions", self.position_key(position.symbol), position.symbol, position, TTL_POSITION)

    def get_position(self, symbol: str) -> PositionRecord | None:
        return decode_record(PositionRecord, self.redis.hgetall(self.position_key(symbol)))

    def delete_position(self, symbol: str) -> None:
        pipe = self.redis.pipeline()
        pipe.delete(self.position_key(symbol))
        pipe.zrem(self._index_key("positions"), symbol)
        pipe.execute()

    def list_positions(self) -> list[PositionRecord]:
        return self._list_indexed("positions", PositionRecord, self.position_key, TTL_POSITION)

    # executions -----------------------------------------------------------------------------
    def save_execution(self, execution: ExecutionRecord) -> str:
        key = self.execution_key(execution.symbol, execution.timestamp)
        self._save_indexed(f"executions:{execution.symbol}", key, key, execution, TTL_EXECUTION)
        return key

    def list_executions(self, symbol: str, limit: int = 100) -> list[ExecutionRecord]:
        """Newest first."""
        index = self._index_key(f"executions:{symbol}")
        now = utcnow().timestamp()
        self.redis.zremrangebyscore(index, "-inf", now - TTL_EXECUTION)
        keys = self.redis.zrevrange(index, 0, limit - 1)
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        return [r for r in (decode_record(ExecutionRecord, raw) for raw in pipe.execute()) if r]

    # metrics and heartbeats -----------------------------------------------------------------
    def set_metrics(self, metrics: MetricsRecord) -> None:
        pipe = self.redis.pipeline()
        pipe.hset(self.metrics_key(), mapping=encode_record(metrics))
        pipe.expire(self.metrics_key(), TTL_METRICS)
        pipe.execute()

    def get_metrics(self) -> MetricsRecord | None:
        return decode_record(MetricsRecord, self.redis.hgetall(self.metrics_key()))

    def _queue_heartbeat(self, pipe, component: str, at: datetime | None = None) -> None:
        pipe.set(self.heartbeat_key(component), (at or utcnow()).isoformat(), ex=TTL_HEARTBEAT)
        pipe.zadd(self._index_key("heartbeats"), {component: (at or utcnow()).timestamp()})

    def beat(self, component: str, at: datetime | None = None) -> None:
        """Record that a component is alive now."""
        pipe = self.redis.pipeline(transaction=False)
        self._queue_heartbeat(pipe, component, at)
        pipe.execute()

    def heartbeat(self, component: str) -> datetime | None:
        raw = self.redis.get(self.heartbeat_key(component))
        return datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else raw) if raw else None

    def heartbeats(self) -> dict[str, datetime | None]:
        """Every component ever seen, with its last beat (None once the beat has expired)."""
        components = [c.decode() if isinstance(c, bytes) else c for c in self.redis.zrange(self._index_key("heartbeats"), 0, -1)]
        return {component: self.heartbeat(component) for component in components}

    # helpers --------------------------------------------------------------------------------
    def _save_indexed(self, kind: str, key: str, member: str, record: object, ttl: int) -> None:
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping=encode_record(record))
        pipe.expire(key, ttl)
        pipe.zadd(self._index_key(kind), {member: utcnow().timestamp()})
        pipe.execute()

    def _list_indexed(self, kind: str, cls: type, key_for, ttl: int) -> list:
        index = self._index_key(kind)
        self.redis.zremrangebyscore(index, "-inf", utcnow().timestamp() - ttl)
        members = self.redis.zrevrange(index, 0, -1)
        pipe = self.redis.pipeline(transaction=False)
        for member in members:
            pipe.hgetall(key_for(member.decode() if isinstance(member, bytes) else member))
        return [r for r in (decode_record(cls, raw) for raw in pipe.execute()) if r]
