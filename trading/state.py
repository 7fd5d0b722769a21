"""Redis hot state: the one module that knows every key name, TTL and record encoding (SPEC §4).

Records are dataclasses with Decimal money and aware UTC datetimes. Hashes store every field as
a string (Decimal via str, datetimes as ISO 8601), so nothing passes through float.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import orjson
import redis

from marketdata.records import (  # noqa: F401  (re-exported: the trading core's callers import them from here)
    BookRecord,
    FeedStats,
    FxRecord,
    Level,
    PriceRecord,
    decode_book,
    decode_record,
    encode_record,
    utcnow,
)
from marketdata.store import PREFIX, TICKS_CHANNEL, MarketStore, book_key, fx_key, rules_key  # noqa: F401

TTL_SIGNAL = 300
TTL_ORDER = 86400
TTL_POSITION = 86400
TTL_EXECUTION = 86400
# An index (sorted set of record keys) never holds more than this many members: the newest.
INDEX_MAX_MEMBERS = 10_000
TTL_METRICS = 300
TTL_PREMIUM = 300
TTL_WARNINGS = 3600
TTL_COUNTER = 2 * 86400
# A reconciliation result is trusted this long (reconcile runs every 60 s in live mode); after
# that it is stale and live trading waits (RECONCILE_MAX_AGE_S overrides).
TTL_RECONCILIATION = 180
# A pair's quote reservation is held at most this long: a worker that dies mid-pair cannot keep
# the venue's quote blocked for ever. Longer than any pair takes to send and book.
QUOTE_HOLD_MS = 300_000
# Quote reservations are integers in hundredths of the venue's quote currency (KRW or USDT):
# what a pair needs is rounded up, what the ledger holds rounded down.
QUOTE_UNIT = Decimal("0.01")

# Announcements of stored signals and executions (JSON of the record), for dashboards and benchmarks.
SIGNALS_CHANNEL = f"{PREFIX}:signals"
EXECUTIONS_CHANNEL = f"{PREFIX}:executions"



def reconcile_max_age_s() -> int:
    """RECONCILE_MAX_AGE_S from the Django settings when they are configured, else the default."""
    try:
        from django.conf import settings

        return int(getattr(settings, "RECONCILE_MAX_AGE_S", TTL_RECONCILIATION))
    except Exception:  # settings not configured (a script using the state alone)
        return TTL_RECONCILIATION


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
    tick_received_at: datetime | None = None  # when the feed received the newer of the two books


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
    # The accounting model (trading/accounting.py): KRW, equity at each venue's marks, flows excluded.
    equity: Decimal = Decimal(0)
    flows: Decimal = Decimal(0)
    pnl_today: Decimal = Decimal(0)  # equity change since 00:00 KST less the day's flows
    pnl_total: Decimal = Decimal(0)  # equity less all flows
    realized: Decimal = Decimal(0)
    unrealized: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class PremiumRecord:
    symbol: str
    premium_pct: Decimal
    upbit_mid: Decimal
    binance_mid: Decimal
    fx_rate: Decimal
    net_upbit_to_binance: Decimal | None
    net_binance_to_upbit: Decimal | None
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class EvaluationContext:
    upbit: BookRecord | None
    binance: BookRecord | None
    fx: FxRecord | None
    reference_fx: FxRecord | None
    limits_version: int
    kill_switch: bool | None
    breaker: tuple[str, int] | None
    market_warning: bool
    lot_step: Decimal | None
    total_balance: Decimal | None
    pnl: tuple[Decimal, Decimal, datetime] | None  # (today, total, as of) from the metrics record
    volatility: float | None
    weight: float | None
    weighted_symbols: int
    fx_minute_ago: Decimal | None = None
    paused: bool = False
    reconciled: bool = False
    exposure_krw: int = 0  # the coin's exposure (reserved or held), for sizing what the limit leaves


# --- the manager -----------------------------------------------------------------------------


EXPOSURE_PREFIX = f"{PREFIX}:guard:exposure:"  # + coin: KRW reserved or held; + "coins": the set of coins


class StateManager(MarketStore):
    """Typed reads and writes of the hot state; the only place key strings are built."""

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
    def _index_key(kind: str) -> str:
        return f"{PREFIX}:index:{kind}"

    # signals --------------------------------------------------------------------------------
    def save_signal(self, signal: SignalRecord) -> None:
        """Store a signal and announce it on SIGNALS_CHANNEL in the same round trip."""
        self._save_indexed("signals", self.signal_key(signal.symbol), signal.symbol, signal, TTL_SIGNAL,
                           announce=SIGNALS_CHANNEL)

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
    def save_execution(self, execution: ExecutionRecord, tick_received_at: datetime | None = None) -> str:
        key = self.execution_key(execution.symbol, execution.timestamp)
        extra = {"tick_received_at": tick_received_at.isoformat()} if tick_received_at else {}
        self._save_indexed(f"executions:{execution.symbol}", key, key, execution, TTL_EXECUTION,
                           announce=EXECUTIONS_CHANNEL, extra=extra)
        pipe = self.redis.pipeline(transaction=False)
        self._index_add(pipe, self._index_key("executions"), key, execution.timestamp.timestamp(), TTL_EXECUTION)
        pipe.execute()
        return key

    def list_executions(self, symbol: str | None, limit: int = 100) -> list[ExecutionRecord]:
        """Newest first, for one coin or (symbol=None) for all."""
        index = self._index_key(f"executions:{symbol}" if symbol else "executions")
        now = utcnow().timestamp()
        self.redis.zremrangebyscore(index, "-inf", now - TTL_EXECUTION)
        keys = self.redis.zrevrange(index, 0, limit - 1)
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        return [r for r in (decode_record(ExecutionRecord, raw) for raw in pipe.execute()) if r]

    # metrics and heartbeats -----------------------------------------------------------------
    # reconciliation: a result expires, so a stale "ok" never keeps live trading open -------------
    def set_reconciliation(self, report: dict, max_age_s: int | None = None) -> None:
        """Store the result for max_age_s (RECONCILE_MAX_AGE_S, default 180 s); a copy without
        the short expiry is kept for /health to show when the last check ran."""
        max_age_s = max_age_s or reconcile_max_age_s()
        now = utcnow()
        payload = orjson.dumps({**report, "checked_at": now.isoformat(),
                                "expires_at": (now.timestamp() + max_age_s)})
        pipe = self.redis.pipeline()
        pipe.set(f"{PREFIX}:reconciliation", payload, ex=max_age_s)
        pipe.set(f"{PREFIX}:reconciliation:last", payload, ex=TTL_COUNTER)
        pipe.execute()

    @staticmethod
    def _fresh_reconciliation(raw) -> dict | None:
        report = orjson.loads(raw) if raw else None
        if report is None or float(report.get("expires_at") or 0) <= utcnow().timestamp():
            return None
        return report

    def reconciliation(self) -> dict | None:
        """The current result; once expired the last one with ok=False and stale=True; None if never run."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(f"{PREFIX}:reconciliation")
        pipe.get(f"{PREFIX}:reconciliation:last")
        current, last = pipe.execute()
        report = self._fresh_reconciliation(current)
        if report is not None:
            return report
        if last:
            return {**orjson.loads(last), "ok": False, "stale": True}
        return None

    def set_rebalance(self, suggestions: list[dict]) -> None:
        self.redis.set(f"{PREFIX}:rebalance", orjson.dumps(suggestions), ex=TTL_METRICS)

    def rebalance(self) -> list[dict]:
        raw = self.redis.get(f"{PREFIX}:rebalance")
        return orjson.loads(raw) if raw else []

    def set_metrics(self, metrics: MetricsRecord) -> None:
        pipe = self.redis.pipeline()
        pipe.hset(self.metrics_key(), mapping=encode_record(metrics))
        pipe.expire(self.metrics_key(), TTL_METRICS)
        pipe.execute()

    def get_metrics(self) -> MetricsRecord | None:
        return decode_record(MetricsRecord, self.redis.hgetall(self.metrics_key()))

    # signal evaluation: coalescing claims and per-symbol locks ------------------------------
    def claim_evaluation(self, symbol: str, ttl_ms: int = 2000) -> bool:
        """True for the first caller while no evaluation of symbol is pending."""
        return bool(self.redis.set(f"{PREFIX}:pending:{symbol}", "1", nx=True, px=ttl_ms))

    def claim_evaluations(self, symbols: Sequence[str], ttl_ms: int = 2000) -> list[str]:
        """Claim several symbols in one round trip; return those newly claimed."""
        pipe = self.redis.pipeline(transaction=False)
        for symbol in symbols:
            pipe.set(f"{PREFIX}:pending:{symbol}", "1", nx=True, px=ttl_ms)
        return [symbol for symbol, ok in zip(symbols, pipe.execute(), strict=True) if ok]

    def clear_evaluation(self, symbol: str) -> None:
        self.redis.delete(f"{PREFIX}:pending:{symbol}")

    _RELEASE = """
    if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
    return 0
    """

    def acquire_lock(self, name: str, ttl_ms: int) -> str | None:
        """A lock that expires by itself if its holder dies; returns the token to release it with."""
        token = uuid.uuid4().hex
        return token if self.redis.set(f"{PREFIX}:lock:{name}", token, nx=True, px=ttl_ms) else None

    _EXTEND = """
    if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
    return 0
    """

    def set_transfer_cost(self, asset: str, pct: Decimal) -> None:
        """The last transfer's fee as a share of it (%): the inventory strategy's amortised cost."""
        self.redis.set(f"{PREFIX}:transfer_cost:{asset}", str(pct), ex=86400)

    def transfer_cost(self, asset: str) -> Decimal | None:
        raw = self.redis.get(f"{PREFIX}:transfer_cost:{asset}")
        return Decimal(raw.decode() if isinstance(raw, bytes) else raw) if raw else None

    def extend_lock(self, name: str, token: str, ttl_ms: int) -> bool:
        """Keep a lock we still hold for another ttl_ms; False if it expired or changed hands."""
        return bool(self.redis.eval(self._EXTEND, 1, f"{PREFIX}:lock:{name}", token, ttl_ms))

    def release_lock(self, name: str, token: str) -> bool:
        return bool(self.redis.eval(self._RELEASE, 1, f"{PREFIX}:lock:{name}", token))

    # guard state ------------------------------------------------------------------------------
    # The database is the record of truth for the kill switch, the pauses and the pairs; Redis
    # holds a mirror that every evaluation reads, re-mirrored from the database every second by
    # beat (and at start-up). The rule for every control: the safe direction goes first
    # (engaging: Redis, then the database; releasing: the database, then Redis), and an
    # unreadable mirror blocks trading.
    GUARD_MIRRORED_KEY = f"{PREFIX}:guard:mirrored"

    @staticmethod
    def quote_key(venue: str) -> str:
        """Hash of the quote reserved by pairs in flight on a venue: reservation id -> "units:expires_ms"."""
        return f"{PREFIX}:guard:quote:{venue}"

    @staticmethod
    def quote_version_key(venue: str) -> str:
        """Bumped each time settled fills changed the ledger's quote of a venue."""
        return f"{PREFIX}:guard:quote_version:{venue}"

    def set_kill_switch(self, engaged: bool) -> None:
        """Mirror of the database's kill switch, read before every pair."""
        self.redis.set(f"{PREFIX}:guard:kill", "1" if engaged else "0")

    def kill_switch(self) -> bool | None:
        raw = self.redis.get(f"{PREFIX}:guard:kill")
        return None if raw is None else raw in (b"1", "1")

    def trip_breaker(self, reason: str, cooldown_s: int) -> bool:
        """Halt trading for the cooldown; False if the breaker was already tripped."""
        return bool(self.redis.set(f"{PREFIX}:guard:breaker", reason, nx=True, ex=cooldown_s))

    def breaker(self) -> tuple[str, int] | None:
        """(reason, seconds left) while tripped."""
        pipe = self.redis.pipeline()
        pipe.get(f"{PREFIX}:guard:breaker")
        pipe.ttl(f"{PREFIX}:guard:breaker")
        reason, ttl = pipe.execute()
        if reason is None:
            return None
        return (reason.decode() if isinstance(reason, bytes) else reason, max(int(ttl), 0))

    def bump_limits_version(self) -> int:
        """Tell every worker to re-read the limits before its next check."""
        return int(self.redis.incr(f"{PREFIX}:guard:limits_version"))

    def limits_version(self) -> int:
        return int(self.redis.get(f"{PREFIX}:guard:limits_version") or 0)

    def reset_breaker(self) -> None:
        self.redis.delete(f"{PREFIX}:guard:breaker")

    # Checks and takes a trade slot, the exposure and (optionally) the buy venue's quote in one
    # step, so that two workers can never both pass a limit only one trade fits under.
    # KEYS: hour, day, exposure, mirrored marker[, quote hash, quote version]
    # ARGV: max/hour, max/day, exposure, max exposure, counter TTL, require mirrored ('1'/'0')
    #       [, quote units, available units, version seen ('' = unchecked), reservation id,
    #        now ms, expires ms, hold ms]
    _RESERVE = """
    if ARGV[6] == '1' and redis.call('EXISTS', KEYS[4]) == 0 then return 'unmirrored' end
    local hour, day, exposure = tonumber(redis.call('GET', KEYS[1]) or '0'),
                                tonumber(redis.call('GET', KEYS[2]) or '0'),
                                tonumber(redis.call('GET', KEYS[3]) or '0')
    if hour + 1 > tonumber(ARGV[1]) then return 'trades_per_hour' end
    if day + 1 > tonumber(ARGV[2]) then return 'trades_per_day' end
    if exposure + tonumber(ARGV[3]) > tonumber(ARGV[4]) then return 'position_size' end
    -- The total across coins (premiums move together). Every coin with exposure is in one set;
    -- the coins' keys are read by name (a single Redis, not a cluster). ARGV[#ARGV]: the cap
    -- ('' for none), ARGV[#ARGV - 1]: this coin, ARGV[#ARGV - 2]: the coins' key prefix.
    local max_total, coin, prefix = ARGV[#ARGV], ARGV[#ARGV - 1], ARGV[#ARGV - 2]
    if max_total ~= '' then
      local total_exposure = exposure + tonumber(ARGV[3])
      for _, other in ipairs(redis.call('SMEMBERS', prefix .. 'coins')) do
        if other ~= coin then total_exposure = total_exposure + tonumber(redis.call('GET', prefix .. other) or '0') end
      end
      if total_exposure > tonumber(max_total) then return 'total_exposure' end
    end
    if #KEYS >= 6 then
      if ARGV[9] ~= '' and (redis.call('GET', KEYS[6]) or '0') ~= ARGV[9] then return 'quote_changed' end
      local now, total = tonumber(ARGV[11]), 0
      local entries = redis.call('HGETALL', KEYS[5])
      for i = 1, #entries, 2 do
        local units, expires = string.match(entries[i + 1], '^(%-?%d+):(%d+)$')
        if units == nil or tonumber(expires) <= now then
          redis.call('HDEL', KEYS[5], entries[i])
        else
          total = total + tonumber(units)
        end
      end
      if total + tonumber(ARGV[7]) > tonumber(ARGV[8]) then return 'quote_balance' end
      redis.call('HSET', KEYS[5], ARGV[10], ARGV[7] .. ':' .. ARGV[12])
      redis.call('PEXPIRE', KEYS[5], ARGV[13])
    end
    redis.call('INCR', KEYS[1]); redis.call('EXPIRE', KEYS[1], ARGV[5])
    redis.call('INCR', KEYS[2]); redis.call('EXPIRE', KEYS[2], ARGV[5])
    redis.call('INCRBY', KEYS[3], ARGV[3])
    redis.call('SADD', prefix .. 'coins', coin)
    return 'ok'
    """

    def _counter_keys(self, symbol: str, hour: str, day: str) -> list[str]:
        return [f"{PREFIX}:guard:trades:hour:{hour}", f"{PREFIX}:guard:trades:day:{day}",
                f"{PREFIX}:guard:exposure:{symbol}"]

    def reserve_trade(self, symbol: str, hour: str, day: str, exposure_krw: int, *, max_per_hour: int,
                      max_per_day: int, max_exposure_krw: int, quote_venue: str | None = None,
                      quote_units: int = 0, quote_available_units: int = 0, quote_version: int | None = None,
                      reservation_id: str = "", hold_ms: int = QUOTE_HOLD_MS, require_mirrored: bool = False,
                      max_total_exposure_krw: int | None = None) -> str:
        """'ok' when reserved, else the name of the limit that refused.

        max_total_exposure_krw: the cap on the exposure summed over every coin ('total_exposure').

        With quote_venue, the pair's quote (quote_units, in QUOTE_UNIT) is reserved on that venue
        too, against quote_available_units (the ledger's balance) minus every unexpired
        reservation of any coin: 'quote_balance' when it does not fit, 'quote_changed' when
        settled fills changed the ledger since quote_version was read (read the balance again).
        require_mirrored: refuse with 'unmirrored' while the database has not been mirrored into
        this Redis (flushed or restarted), as the counters would start from zero.
        """
        keys = self._counter_keys(symbol, hour, day) + [self.GUARD_MIRRORED_KEY]
        args = [max_per_hour, max_per_day, exposure_krw, max_exposure_krw, TTL_COUNTER, "1" if require_mirrored else "0"]
        if quote_venue:
            now_ms = int(utcnow().timestamp() * 1000)
            keys += [self.quote_key(quote_venue), self.quote_version_key(quote_venue)]
            args += [int(quote_units), int(quote_available_units), "" if quote_version is None else int(quote_version),
                     reservation_id or uuid.uuid4().hex, now_ms, now_ms + hold_ms, hold_ms]
        args += [EXPOSURE_PREFIX, symbol, "" if max_total_exposure_krw is None else int(max_total_exposure_krw)]
        result = self.redis.eval(self._RESERVE, len(keys), *keys, *args)
        return result.decode() if isinstance(result, bytes) else result

    def release_trade(self, symbol: str, hour: str, day: str, exposure_krw: int, quote_venue: str | None = None,
                      reservation_id: str = "") -> None:
        """Give back a reservation whose pair was never sent (its quote reservation too)."""
        hour_key, day_key, exposure_key = self._counter_keys(symbol, hour, day)
        pipe = self.redis.pipeline()
        pipe.decr(hour_key)
        pipe.decr(day_key)
        pipe.decrby(exposure_key, exposure_krw)
        if quote_venue and reservation_id:
            pipe.hdel(self.quote_key(quote_venue), reservation_id)
        pipe.execute()

    def settle_quote(self, venue: str, reservation_id: str) -> None:
        """The pair's fills are in the ledger: give its quote reservation back, and tell every
        reservation that read the ledger before now to read it again."""
        pipe = self.redis.pipeline()
        pipe.hdel(self.quote_key(venue), reservation_id)
        pipe.incr(self.quote_version_key(venue))
        pipe.execute()

    def quote_version(self, venue: str) -> int:
        return int(self.redis.get(self.quote_version_key(venue)) or 0)

    def quote_reserved(self, venue: str) -> int:
        """Quote (in QUOTE_UNIT) held by unexpired reservations on a venue."""
        now_ms = int(utcnow().timestamp() * 1000)
        total = 0
        for raw in self.redis.hvals(self.quote_key(venue)):
            units, _, expires = (raw.decode() if isinstance(raw, bytes) else raw).partition(":")
            if expires and int(expires) > now_ms:
                total += int(units)
        return total

    def set_exposure(self, symbol: str, exposure_krw: int) -> None:
        pipe = self.redis.pipeline()
        pipe.set(f"{EXPOSURE_PREFIX}{symbol}", exposure_krw)
        pipe.sadd(f"{EXPOSURE_PREFIX}coins", symbol)
        pipe.execute()

    def total_exposure(self) -> int:
        coins = [c.decode() if isinstance(c, bytes) else c for c in self.redis.smembers(f"{EXPOSURE_PREFIX}coins")]
        return sum(int(v or 0) for v in self.redis.mget([f"{EXPOSURE_PREFIX}{c}" for c in coins])) if coins else 0

    def exposure(self, symbol: str) -> int:
        return int(self.redis.get(f"{PREFIX}:guard:exposure:{symbol}") or 0)

    def exposure_symbols(self) -> list[str]:
        prefix = EXPOSURE_PREFIX
        found = [k.decode()[len(prefix):] if isinstance(k, bytes) else k[len(prefix):]
                 for k in self.redis.scan_iter(match=f"{prefix}*", count=500)]
        return [s for s in found if s != "coins"]

    def trades_counted(self, hour: str, day: str) -> tuple[int, int]:
        h, d = self.redis.mget(f"{PREFIX}:guard:trades:hour:{hour}", f"{PREFIX}:guard:trades:day:{day}")
        return int(h or 0), int(d or 0)

    # Re-mirrors the database's guard state in one step. The kill switch and the pauses are
    # overwritten every time. The trade counters and the exposure are rebuilt only when this
    # Redis lost them (the marker is missing: flushed or restarted empty; or it names another
    # server run: restarted from an older snapshot) or when a counter key is missing, and then
    # only ever raised (max of current and rebuilt): a reservation that just incremented a
    # counter is never undone.
    # KEYS: kill, paused, marker, hour, day, exposure...   ARGV: kill, run id, counter TTL,
    # hour count, day count, #paused, paused..., exposure... (one per exposure key)
    _MIRROR = """
    redis.call('SET', KEYS[1], ARGV[1])
    local rebuild = redis.call('GET', KEYS[3]) ~= ARGV[2]
    local npaused = tonumber(ARGV[6])
    redis.call('DEL', KEYS[2])
    for i = 1, npaused do redis.call('SADD', KEYS[2], ARGV[6 + i]) end
    local raised = 0
    local function raise(key, value, ttl)
      local current = redis.call('GET', key)
      if rebuild or current == false then
        if current == false or tonumber(current) < tonumber(value) then
          if ttl then redis.call('SET', key, value, 'EX', ttl) else redis.call('SET', key, value) end
          raised = raised + 1
        end
      end
    end
    raise(KEYS[4], ARGV[4], ARGV[3])
    raise(KEYS[5], ARGV[5], ARGV[3])
    for i = 6, #KEYS do raise(KEYS[i], ARGV[6 + npaused + i - 5], nil) end
    redis.call('SET', KEYS[3], ARGV[2])
    if rebuild then return {1, raised} end
    return {0, raised}
    """

    def server_run_id(self) -> str:
        """The Redis server's run id (changes at every restart); '' where INFO is not allowed."""
        try:
            return str(self.redis.info("server").get("run_id", ""))
        except redis.ResponseError:
            return ""

    def mirror_guard(self, *, kill_switch: bool, paused: Iterable[str], hour: str, day: str, trades_hour: int,
                     trades_day: int, exposure_krw: dict[str, int], run_id: str | None = None) -> tuple[bool, int]:
        """Write the database's guard state into Redis (see _MIRROR); returns (rebuilt, keys raised)."""
        paused = sorted(set(paused))
        symbols = sorted(exposure_krw)
        hour_key, day_key, _ = self._counter_keys("", hour, day)
        keys = [f"{PREFIX}:guard:kill", f"{PREFIX}:guard:paused", self.GUARD_MIRRORED_KEY, hour_key, day_key,
                *(f"{PREFIX}:guard:exposure:{s}" for s in symbols)]
        args = ["1" if kill_switch else "0", self.server_run_id() if run_id is None else run_id, TTL_COUNTER,
                int(trades_hour), int(trades_day), len(paused), *paused, *(int(exposure_krw[s]) for s in symbols)]
        rebuilt, raised = self.redis.eval(self._MIRROR, len(keys), *keys, *args)
        if symbols:
            self.redis.sadd(f"{EXPOSURE_PREFIX}coins", *symbols)  # the total-exposure cap sums these
        return bool(rebuilt), int(raised)

    def guard_mirrored(self) -> bool:
        return bool(self.redis.exists(self.GUARD_MIRRORED_KEY))

    def _replace_set(self, key: str, members: Iterable[str], pipe=None) -> None:
        """Swap a set's members in one transaction (readers never see it half-written)."""
        own = pipe is None
        pipe = pipe or self.redis.pipeline()
        pipe.delete(key)
        members = list(members)
        if members:
            pipe.sadd(key, *members)
        if own:
            pipe.execute()

    def set_market_warnings(self, symbols: Iterable[str]) -> None:
        pipe = self.redis.pipeline()
        self._replace_set(f"{PREFIX}:warnings", symbols, pipe)
        pipe.set(f"{PREFIX}:warnings:checked", utcnow().isoformat(), ex=TTL_WARNINGS)
        pipe.execute()

    def set_paused(self, symbols: Iterable[str]) -> None:
        """Mirror of the database's paused coins."""
        self._replace_set(f"{PREFIX}:guard:paused", symbols)

    def add_paused(self, symbol: str) -> None:
        """Pause one coin in the mirror (engaging goes to Redis first, then the database)."""
        self.redis.sadd(f"{PREFIX}:guard:paused", symbol)

    def paused_symbols(self) -> set[str]:
        return {m.decode() if isinstance(m, bytes) else m for m in self.redis.smembers(f"{PREFIX}:guard:paused")}

    def market_warning(self, symbol: str) -> bool:
        return bool(self.redis.sismember(f"{PREFIX}:warnings", symbol))

    def evaluation_context(self, symbol: str, fx_source: str) -> EvaluationContext:
        """Everything one evaluation reads from Redis, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(book_key("upbit", symbol))
        pipe.get(book_key("binance", symbol))
        pipe.hgetall(fx_key(fx_source))
        pipe.hgetall(fx_key("reference"))
        pipe.get(f"{PREFIX}:guard:limits_version")
        pipe.get(f"{PREFIX}:guard:kill")
        pipe.get(f"{PREFIX}:guard:breaker")
        pipe.ttl(f"{PREFIX}:guard:breaker")
        pipe.sismember(f"{PREFIX}:warnings", symbol)
        pipe.sismember(f"{PREFIX}:guard:paused", symbol)
        pipe.hget(rules_key("binance", symbol), "step_size")
        pipe.hmget(self.metrics_key(), "total_balance", "pnl_today", "pnl_total", "timestamp")
        pipe.hmget(self.RISK_KEY, f"vol:{symbol}", f"weight:{symbol}", "weighted")
        # The oldest rate of the last minute: the baseline for the FX jump check.
        now = utcnow().timestamp()
        pipe.zrangebyscore(f"{PREFIX}:fx:history:{fx_source}", now - 60, "+inf", start=0, num=1)
        pipe.get(f"{PREFIX}:reconciliation")
        pipe.get(f"{EXPOSURE_PREFIX}{symbol}")
        (upbit, binance, fx, reference, version, kill, breaker, breaker_ttl, warning, paused, step, total, risk,
         fx_before, reconciliation, exposure) = pipe.execute()
        text = lambda raw: raw.decode() if isinstance(raw, bytes) else raw  # noqa: E731
        return EvaluationContext(
            upbit=decode_book(upbit) if upbit else None,
            binance=decode_book(binance) if binance else None,
            fx=decode_record(FxRecord, fx),
            reference_fx=decode_record(FxRecord, reference),
            limits_version=int(version or 0),
            kill_switch=None if kill is None else text(kill) == "1",
            breaker=(text(breaker), max(int(breaker_ttl), 0)) if breaker is not None else None,
            market_warning=bool(warning),
            paused=bool(paused),
            reconciled=bool((self._fresh_reconciliation(reconciliation) or {}).get("ok")),
            lot_step=Decimal(text(step)) if step else None,
            total_balance=Decimal(text(total[0])) if total[0] else None,
            pnl=(Decimal(text(total[1])), Decimal(text(total[2])), datetime.fromisoformat(text(total[3])))
            if total[1] and total[2] and total[3] else None,
            volatility=float(text(risk[0])) if risk[0] else None,
            weight=float(text(risk[1])) if risk[1] else None,
            weighted_symbols=int(text(risk[2])) if risk[2] else 0,
            exposure_krw=int(exposure or 0),
            fx_minute_ago=Decimal(text(fx_before[0]).split(":", 1)[1]) if fx_before else None,
        )

    # premium --------------------------------------------------------------------------------
    def save_premium(self, record: PremiumRecord, history_seconds: int, sample_every: float = 1.0) -> None:
        """Store the latest premium, and sample it into a rolling history (at most once a period)."""
        key = f"{PREFIX}:premium:{record.symbol}"
        history = f"{PREFIX}:premium:history:{record.symbol}"
        now = record.timestamp.timestamp()
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping=encode_record(record))
        pipe.expire(key, TTL_PREMIUM)
        pipe.incr(f"{PREFIX}:stats:evaluations")
        pipe.zadd(f"{PREFIX}:index:premiums", {record.symbol: now})
        if self.redis.set(f"{history}:sampled", "1", nx=True, px=max(1, int(sample_every * 1000))):
            self.sample_premium(record.symbol, now, record.premium_pct, history_seconds, upbit_mid=record.upbit_mid, pipe=pipe)
        pipe.execute()

    def sample_premium(self, symbol: str, ts: float, premium_pct: Decimal, history_seconds: int,
                       upbit_mid: Decimal | None = None, pipe=None) -> None:
        """Add one sample (unthrottled) to a coin's premium history (percent) and, when given, to its
        Upbit mid history; both keep history_seconds before ts."""
        own = pipe is None
        pipe = self.redis.pipeline(transaction=False) if own else pipe
        keys = [f"{PREFIX}:premium:history:{symbol}"]
        pipe.zadd(keys[0], {f"{ts:.3f}:{premium_pct}": ts})
        if upbit_mid is not None:
            keys.append(f"{PREFIX}:mids:{symbol}")
            pipe.zadd(keys[1], {f"{ts:.3f}:{upbit_mid}": ts})
        for key in keys:
            pipe.zremrangebyscore(key, "-inf", ts - history_seconds)
            pipe.expire(key, history_seconds)
        if own:
            pipe.execute()

    def evaluations_count(self) -> int:
        return int(self.redis.get(f"{PREFIX}:stats:evaluations") or 0)

    def get_premium(self, symbol: str) -> PremiumRecord | None:
        return decode_record(PremiumRecord, self.redis.hgetall(f"{PREFIX}:premium:{symbol}"))

    def list_premiums(self) -> list[PremiumRecord]:
        return self._list_indexed("premiums", PremiumRecord, lambda s: f"{PREFIX}:premium:{s}", TTL_PREMIUM)

    def premium_history(self, symbol: str) -> list[tuple[float, Decimal]]:
        """The premium (percent) sampled about once a second: what the risk model is fitted on."""
        return self._samples(f"{PREFIX}:premium:history:{symbol}")

    def mid_history(self, symbol: str) -> list[tuple[float, Decimal]]:
        """Upbit mid prices sampled with the premium (not used by the risk model: a premium book
        does not hold the coin's price)."""
        return self._samples(f"{PREFIX}:mids:{symbol}")

    def premium_symbols(self) -> list[str]:
        return [m.decode() if isinstance(m, bytes) else m for m in self.redis.zrange(f"{PREFIX}:index:premiums", 0, -1)]

    # risk model (refitted on a schedule) ----------------------------------------------------------
    # arbitrage:risk (hash, an hour): timestamp, horizon_s, weighted (number of weighted coins),
    # var_95_krw (the breaker's VaR budget, KRW over one day), var_source (equity or book),
    # book_var_95_krw, equity_var_95_krw, and per coin vol:<coin> (premium volatility over the
    # horizon, percentage points) and weight:<coin>. arbitrage:risk:report: the refit's detail (JSON).
    RISK_KEY = f"{PREFIX}:risk"
    RISK_REPORT_KEY = f"{PREFIX}:risk:report"
    RISK_TTL = 3600

    def set_risk_model(self, var_95_krw: float | None, vols: dict[str, float], weights: dict[str, float], *,
                       horizon_seconds: int = 3600, var_source: str | None = None, book_var_krw: float | None = None,
                       equity_var_krw: float | None = None, report: dict | None = None) -> None:
        optional = lambda v: "" if v is None else repr(float(v))  # noqa: E731
        mapping = {"timestamp": utcnow().isoformat(), "horizon_s": str(int(horizon_seconds)), "weighted": str(len(weights)),
                   "var_95_krw": optional(var_95_krw), "var_source": var_source or "",
                   "book_var_95_krw": optional(book_var_krw), "equity_var_95_krw": optional(equity_var_krw)}
        mapping.update({f"vol:{s}": repr(float(v)) for s, v in vols.items()})
        mapping.update({f"weight:{s}": repr(float(w)) for s, w in weights.items()})
        pipe = self.redis.pipeline()
        pipe.delete(self.RISK_KEY)
        pipe.hset(self.RISK_KEY, mapping=mapping)
        pipe.expire(self.RISK_KEY, self.RISK_TTL)
        if report is not None:
            pipe.set(self.RISK_REPORT_KEY, orjson.dumps(report, option=orjson.OPT_NON_STR_KEYS, default=str), ex=self.RISK_TTL)
        pipe.execute()

    def risk_model(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.redis.hgetall(self.RISK_KEY).items()}

    def risk_report(self) -> dict | None:
        raw = self.redis.get(self.RISK_REPORT_KEY)
        return orjson.loads(raw) if raw else None

    def var_budget_krw(self) -> Decimal | None:
        """The VaR budget in KRW over one day (equity or premium book VaR at 95 %); None without one."""
        raw = self.redis.hget(self.RISK_KEY, "var_95_krw")
        return Decimal(raw.decode()) if raw else None

    def var_budget(self) -> Decimal | None:
        """The VaR budget as a share of the published total balance (what maybe_trip_breaker
        multiplies the balance by): var_95_krw / total_balance; None without either."""
        var_krw, total = self.redis.pipeline(transaction=False).hget(self.RISK_KEY, "var_95_krw") \
            .hget(self.metrics_key(), "total_balance").execute()
        if not var_krw or not total or Decimal(total.decode()) <= 0:
            return None
        return Decimal(var_krw.decode()) / Decimal(total.decode())

    # equity samples (the accounting samples equity about once a second) ------------------------
    EQUITY_HISTORY_KEY = f"{PREFIX}:equity:history"
    EQUITY_HISTORY_SECONDS = 86400

    def sample_equity(self, ts: float, value: Decimal) -> None:
        """Add an equity sample (KRW) at ts (epoch seconds); a day of samples is kept."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(self.EQUITY_HISTORY_KEY, {f"{ts:.3f}:{value}": ts})
        pipe.zremrangebyscore(self.EQUITY_HISTORY_KEY, "-inf", ts - self.EQUITY_HISTORY_SECONDS)
        pipe.expire(self.EQUITY_HISTORY_KEY, self.EQUITY_HISTORY_SECONDS)
        pipe.execute()

    def equity_history(self) -> list[tuple[float, Decimal]]:
        return self._samples(self.EQUITY_HISTORY_KEY)

    def _samples(self, key: str) -> list[tuple[float, Decimal]]:
        members = self.redis.zrange(key, 0, -1)
        out = []
        for member in members:
            ts, value = (member.decode() if isinstance(member, bytes) else member).split(":", 1)
            out.append((float(ts), Decimal(value)))
        return out

    # helpers --------------------------------------------------------------------------------
    def _save_indexed(self, kind: str, key: str, member: str, record: object, ttl: int,
                      announce: str | None = None, extra: dict | None = None) -> None:
        encoded = encode_record(record)
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping=encoded)
        pipe.expire(key, ttl)
        self._index_add(pipe, self._index_key(kind), member, utcnow().timestamp(), ttl)
        if announce:
            pipe.publish(announce, orjson.dumps({**encoded, **(extra or {})}))
        pipe.execute()

    @staticmethod
    def _index_add(pipe, index: str, member: str, score: float, ttl: int) -> None:
        """Index a record and prune in the same round trip: members older than the records' TTL go,
        the index keeps at most INDEX_MAX_MEMBERS (the newest) and itself expires when idle."""
        pipe.zadd(index, {member: score})
        pipe.zremrangebyscore(index, "-inf", utcnow().timestamp() - ttl)
        pipe.zremrangebyrank(index, 0, -INDEX_MAX_MEMBERS - 1)
        pipe.expire(index, ttl)

    def _list_indexed(self, kind: str, cls: type, key_for, ttl: int) -> list:
        index = self._index_key(kind)
        self.redis.zremrangebyscore(index, "-inf", utcnow().timestamp() - ttl)
        members = self.redis.zrevrange(index, 0, -1)
        pipe = self.redis.pipeline(transaction=False)
        for member in members:
            pipe.hgetall(key_for(member.decode() if isinstance(member, bytes) else member))
        return [r for r in (decode_record(cls, raw) for raw in pipe.execute()) if r]
