"""The market data in Redis: the one module that knows the feeds' key names, TTLs and channel.

Feeds write prices, books, rates, exchange rules, their stats and their heartbeat here; the
trading core reads them through the same class (trading.state.StateManager extends it).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime

import orjson
import redis

from marketdata.records import (
    BookRecord,
    FeedStats,
    FxRecord,
    PriceRecord,
    decode_book,
    decode_record,
    encode_book,
    encode_record,
    encode_sample,
    encode_top,
    utcnow,
)

PREFIX = "arbitrage"

TTL_PRICE = 60
TTL_BOOK = 60
TTL_FX = 60
TTL_HEARTBEAT = 60
TTL_FEED_STATS = 60
TTL_RULES = 86400

# Pub/sub channel on which feed workers announce which books changed in one flush.
TICKS_CHANNEL = f"{PREFIX}:ticks"
# The coins whose books changed and are not yet evaluated: a sorted set, coin -> epoch seconds of its
# oldest unevaluated change (the feed's flush). The feed adds to it in the same script that writes the
# books, and sets EVALUATING_KEY (one batch is queued; it lapses by itself after EVALUATING_MS if the
# batch never runs); only when that flag is new does it publish on EVALUATE_CHANNEL, where the
# dispatcher hears that a batch must be queued. The batch takes the set and clears the flag at once.
# While the flag is held (a batch task runs, or is queued), the change instead leaves one token in
# WAKE_KEY, a list: a running task that found nothing to take waits on it (BLPOP) for the next change,
# so while the market moves, one change reaches a running task with no dispatcher, broker or new task.
DIRTY_KEY = f"{PREFIX}:dirty"
EVALUATING_KEY = f"{PREFIX}:evaluating"
EVALUATE_CHANNEL = f"{PREFIX}:evaluate"
WAKE_KEY = f"{PREFIX}:evaluate:wake"
# The coins worth walking lately: a sorted set, coin -> epoch seconds when a screen last found its top
# of book able to beat the minimum (written with the batch's results). Only these coins are marked
# changed by a change below their best levels; another coin's premium and screen read its best levels
# only, so such a change would leave its evaluation exactly as it was.
WALKING_KEY = f"{PREFIX}:walking"
WALKING_S = 5.0
TTL_WALKING = 60
# A feed still marks a coin whose book changed only below its best levels once this long after it last
# marked it, so its premium is stored as freshly as while every change was screened (a screen stores
# an unchanged premium again once it is this old).
REFRESH_S = 1.0
EVALUATING_MS = 2000
TTL_DIRTY = 60
NO_PRICE = ("",) * 7  # a book written without its price hash (write_market's same_prices)
# Every component that ever beat, scored by its last beat.
HEARTBEATS_INDEX_KEY = f"{PREFIX}:index:heartbeats"


def price_key(exchange: str, symbol: str) -> str:
    return f"{PREFIX}:prices:{exchange}:{symbol}"


def book_key(exchange: str, symbol: str) -> str:
    return f"{PREFIX}:book:{exchange}:{symbol}"


def book_top_key(exchange: str, symbol: str) -> str:
    """The book's best levels and times in a few bytes (marketdata.records.encode_top), for the screen."""
    return f"{PREFIX}:book:top:{exchange}:{symbol}"


def key_template(build, *head: str) -> tuple[str, str]:
    """(before, after) the last argument of a key builder: how a Lua script builds the same key."""
    marker = "\x00"
    before, after = build(*head, marker).split(marker)
    return before, after


def fx_key(source: str) -> str:
    return f"{PREFIX}:fx:{source}"


def fx_history_key(source: str) -> str:
    return f"{PREFIX}:fx:history:{source}"


def rules_key(exchange: str, symbol: str) -> str:
    return f"{PREFIX}:rules:{exchange}:{symbol}"


def feed_stats_key(exchange: str) -> str:
    return f"{PREFIX}:feedstats:{exchange}"


def heartbeat_key(component: str) -> str:
    return f"{PREFIX}:heartbeat:{component}"


def text(raw: bytes | str | None) -> str | None:
    """A Redis reply as str (clients may or may not decode responses)."""
    return raw.decode() if isinstance(raw, bytes) else raw


def execute_scripted(client: redis.Redis, queue, *scripts) -> list:
    """Run a pipeline that calls Lua scripts by EVALSHA, in one round trip. (redis-py's Script asks
    SCRIPT EXISTS before every pipeline that uses it: a second round trip on the hot path.) A server
    that lost the scripts (restarted, SCRIPT FLUSH) gets them loaded and the commands it refused sent
    once more, alone: every other command of the pipeline ran once, so none runs twice."""
    pipe = client.pipeline(transaction=False)
    queue(pipe)
    stack = list(pipe.command_stack)
    replies = pipe.execute(raise_on_error=False)
    refused = [i for i, reply in enumerate(replies) if isinstance(reply, redis.exceptions.NoScriptError)]
    if refused:
        for script in scripts:
            client.script_load(script.script)
        again = client.pipeline(transaction=False)
        for i in refused:
            args, options = stack[i]
            again.execute_command(*args, **options)
        for i, reply in zip(refused, again.execute(raise_on_error=False), strict=True):
            replies[i] = reply
    for reply in replies:
        if isinstance(reply, redis.exceptions.ResponseError):
            raise reply
    return replies


class MarketStore:
    """Typed reads and writes of the market data and of heartbeats."""

    # One script call writes every changed book, marks their coins changed and announces them: a command
    # per key would cost the feed more in client-side packing and parsing than everything else it does.
    # KEYS: per book its price, book and top keys. ARGV: the TTLs, the ticks channel ('' for none), the
    # counts of changed and of deep-changed coins, then (if any) the flush's epoch seconds, those coins
    # and the keys and values of the marking, then 9 values per book, the ticks payload.
    _WRITE_BOOKS = """
    local ttl_price, ttl_book = ARGV[1], ARGV[2]
    local changed, deep = tonumber(ARGV[4]), tonumber(ARGV[5])
    local a = 6
    if changed + deep > 0 then
      local stamp = ARGV[6]
      local k = 7 + changed + deep
      local members = {}
      for i = 7, 6 + changed do
        members[#members + 1] = stamp
        members[#members + 1] = ARGV[i]
      end
      -- A change below the best levels moves nothing a screen reads, unless the coin was worth
      -- walking lately (its walk reads the whole book).
      local since = tonumber(ARGV[k + 7])
      for i = 7 + changed, 6 + changed + deep do
        local walked = redis.call('ZSCORE', ARGV[k + 6], ARGV[i])
        if walked and tonumber(walked) >= since then
          members[#members + 1] = stamp
          members[#members + 1] = ARGV[i]
        end
      end
      if #members > 0 then
        redis.call('ZADD', ARGV[k], 'NX', unpack(members))
        redis.call('EXPIRE', ARGV[k], ARGV[k + 4])
        if redis.call('SET', ARGV[k + 1], '1', 'NX', 'PX', ARGV[k + 2]) then
          redis.call('PUBLISH', ARGV[k + 3], '1')
        elseif redis.call('LLEN', ARGV[k + 5]) == 0 then
          redis.call('RPUSH', ARGV[k + 5], '1')
          redis.call('PEXPIRE', ARGV[k + 5], ARGV[k + 2])
        end
      end
      a = k + 8
    end
    local n = #KEYS / 3
    for i = 0, n - 1 do
      local b = a + i * 9
      local price_key = KEYS[3 * i + 1]
      if ARGV[b] ~= '' then  -- '': its bid and ask as last written, less than a second ago
        redis.call('HSET', price_key, 'exchange', ARGV[b], 'symbol', ARGV[b + 1], 'bid', ARGV[b + 2],
                   'ask', ARGV[b + 3], 'mid', ARGV[b + 4], 'timestamp', ARGV[b + 5], 'received_at', ARGV[b + 6])
        redis.call('EXPIRE', price_key, ttl_price)
      end
      if ARGV[b + 7] ~= '' then
        redis.call('SET', KEYS[3 * i + 2], ARGV[b + 7], 'EX', ttl_book)
        redis.call('SET', KEYS[3 * i + 3], ARGV[b + 8], 'EX', ttl_book)
      end
    end
    if ARGV[3] ~= '' then
      redis.call('PUBLISH', ARGV[3], ARGV[#ARGV])
    end
    return n
    """

    heartbeat_key = staticmethod(heartbeat_key)

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._write_books = client.register_script(self._WRITE_BOOKS)

    @classmethod
    def from_url(cls, url: str):
        """A store on a client that checks its connection and never blocks for ever."""
        return cls(redis.Redis.from_url(url, health_check_interval=30, socket_timeout=5))

    # prices and books (the feed's hot path: one round trip per flush) -------------------------
    def write_market(
        self,
        prices: Iterable[PriceRecord],
        books: Iterable[BookRecord] = (),
        fx: Iterable[FxRecord] = (),
        *,
        notify: Sequence[str] = (),
        changed: Sequence[str] = (),
        deep: Sequence[str] = (),
        changed_at: float | None = None,
        heartbeat: str | None = None,
        stats: FeedStats | None = None,
        walking_since: float | None = None,
        same_prices: Collection[str] = (),
    ) -> list[str] | None:
        """Write prices (each with its book), rates, heartbeat and stats in one round trip.

        `books` must pair with `prices` one to one; `notify` is published after the writes, so a
        subscriber that hears it can read the new values. `changed` coins are marked for evaluation
        (DIRTY_KEY), each keeping the time of its oldest unevaluated change (changed_at, else now).
        `deep` coins changed only below their best levels: they are marked only if worth walking
        lately (WALKING_KEY), since nothing else a screen reads has moved.
        walking_since: also read (and return) the coins worth walking since then (epoch seconds); else
        None is returned. same_prices: coins whose price hash is not rewritten with their book (the
        feed's: bid and ask as it last wrote them, less than REFRESH_S ago).
        """
        prices, books = list(prices), list(books)
        if books and len(books) != len(prices):
            raise ValueError("write_market: books must pair one to one with prices")
        at = time.time() if changed_at is None else changed_at

        def queue(pipe):
            self._queue_market(pipe, prices, books, fx, notify, changed, deep, at, heartbeat, stats, same_prices)
            if walking_since is not None:
                pipe.zrangebyscore(WALKING_KEY, walking_since, "+inf")

        replies = execute_scripted(self.redis, queue, self._write_books)
        return None if walking_since is None else [text(coin) for coin in replies[-1]]

    def _queue_market(self, pipe, prices, books, fx, notify, changed, deep, changed_at, heartbeat, stats,
                      same_prices=()) -> None:
        if prices or changed or deep:
            keys, args = [], [TTL_PRICE, TTL_BOOK, TICKS_CHANNEL if notify else "", len(changed), len(deep)]
            if changed or deep:
                args += [f"{changed_at:.6f}", *changed, *deep, DIRTY_KEY, EVALUATING_KEY, EVALUATING_MS, EVALUATE_CHANNEL,
                         TTL_DIRTY, WAKE_KEY, WALKING_KEY, f"{changed_at - WALKING_S:.6f}"]
            for i, price in enumerate(prices):
                keys += [price_key(price.exchange, price.symbol), book_key(price.exchange, price.symbol),
                         book_top_key(price.exchange, price.symbol)]
                if price.symbol in same_prices:
                    args += NO_PRICE
                else:
                    received = price.received_at.isoformat() if price.received_at else ""
                    args += [price.exchange, price.symbol, str(price.bid), str(price.ask), str(price.mid),
                             price.timestamp.isoformat(), received]
                args += [encode_book(books[i]), encode_top(books[i])] if books else [b"", b""]
            if notify:
                args.append(orjson.dumps(list(notify)))
            pipe.evalsha(self._write_books.sha, len(keys), *keys, *args)
        elif notify:
            pipe.publish(TICKS_CHANNEL, orjson.dumps(list(notify)))
        for rate in fx:
            key = fx_key(rate.source)
            pipe.hset(key, mapping=encode_record(rate))
            pipe.expire(key, TTL_FX)
        if heartbeat:
            self._queue_heartbeat(pipe, heartbeat)
        if stats:
            key = feed_stats_key(stats.exchange)
            pipe.hset(key, mapping=encode_record(stats))
            pipe.expire(key, TTL_FEED_STATS)

    def write_price(self, price: PriceRecord, book: BookRecord | None = None) -> None:
        """Write one quote (and its book) outside the feed, e.g. a fixed-rate source or a test."""
        self.write_market([price], [book] if book else [])

    def get_price(self, exchange: str, symbol: str) -> PriceRecord | None:
        return decode_record(PriceRecord, self.redis.hgetall(price_key(exchange, symbol)))

    def get_prices(self, keys) -> dict[tuple[str, str], PriceRecord]:
        """The price records of many (exchange, symbol), in one round trip; missing ones left out."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for exchange, symbol in keys:
            pipe.hgetall(price_key(exchange, symbol))
        found = ((key, decode_record(PriceRecord, raw)) for key, raw in zip(keys, pipe.execute(), strict=True))
        return {key: record for key, record in found if record is not None}

    def get_book(self, exchange: str, symbol: str) -> BookRecord | None:
        raw = self.redis.get(book_key(exchange, symbol))
        return None if raw is None else decode_book(raw)

    def get_market(self, symbol: str, fx_source: str) -> tuple[BookRecord | None, BookRecord | None, FxRecord | None]:
        """Both venues' books of a coin and the rate, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(book_key("upbit", symbol))
        pipe.get(book_key("binance", symbol))
        pipe.hgetall(fx_key(fx_source))
        upbit, binance, fx = pipe.execute()
        return (decode_book(upbit) if upbit else None, decode_book(binance) if binance else None,
                decode_record(FxRecord, fx))

    # rates --------------------------------------------------------------------------------------
    def get_fx(self, source: str) -> FxRecord | None:
        return decode_record(FxRecord, self.redis.hgetall(fx_key(source)))

    def set_fx(self, rate: FxRecord) -> None:
        self.write_market((), fx=(rate,))

    def sample_fx(self, rate: FxRecord, keep_seconds: int = 300) -> None:
        """Keep a few minutes of the trading rate, so a jump over time can be seen."""
        key = fx_history_key(rate.source)
        now = rate.timestamp.timestamp()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(key, {encode_sample(now, rate.rate): now})
        pipe.zremrangebyscore(key, "-inf", now - keep_seconds)
        pipe.expire(key, keep_seconds)
        pipe.execute()

    # exchange rules -------------------------------------------------------------------------
    def set_rules(self, exchange: str, symbol: str, rules: dict[str, str]) -> None:
        key = rules_key(exchange, symbol)
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping=rules)
        pipe.expire(key, TTL_RULES)
        pipe.execute()

    def get_rules(self, exchange: str, symbol: str) -> dict[str, str]:
        raw = self.redis.hgetall(rules_key(exchange, symbol))
        return {k.decode(): v.decode() for k, v in raw.items()}

    # feed stats and heartbeats ----------------------------------------------------------------
    def get_feed_stats(self, exchange: str) -> FeedStats | None:
        return decode_record(FeedStats, self.redis.hgetall(feed_stats_key(exchange)))

    def _queue_heartbeat(self, pipe, component: str, at: datetime | None = None) -> None:
        pipe.set(heartbeat_key(component), (at or utcnow()).isoformat(), ex=TTL_HEARTBEAT)
        pipe.zadd(HEARTBEATS_INDEX_KEY, {component: (at or utcnow()).timestamp()})

    def beat(self, component: str, at: datetime | None = None) -> None:
        """Record that a component is alive now."""
        pipe = self.redis.pipeline(transaction=False)
        self._queue_heartbeat(pipe, component, at)
        pipe.execute()

    def heartbeat(self, component: str) -> datetime | None:
        raw = self.redis.get(heartbeat_key(component))
        return datetime.fromisoformat(text(raw)) if raw else None

    def heartbeats(self) -> dict[str, datetime | None]:
        """Every component ever seen, with its last beat (None once the beat has expired)."""
        components = [text(c) for c in self.redis.zrange(HEARTBEATS_INDEX_KEY, 0, -1)]
        return {component: self.heartbeat(component) for component in components}
