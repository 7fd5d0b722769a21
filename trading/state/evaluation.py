"""Batched evaluation: the coins that changed, their contexts in one round trip, their results in another.

arbitrage:dirty (sorted set, coin -> epoch seconds of its oldest change not yet evaluated) and
arbitrage:evaluating (a flag: one batch task is queued) are written by the dispatcher; a batch task
takes the set and clears the flag in one script, so a change that lands while a batch runs queues
exactly one more task, and none is ever left without one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import orjson
import redis

from marketdata.records import BookRecord, levels_from_json
from marketdata.store import execute_scripted

from . import keys
from .accounts import fresh_reconciliation
from .codec import decode_book, decode_record, decode_sample_value, encode_sample, encode_value, text
from .indexes import queue_indexed
from .records import EvaluationContext, FxRecord, PremiumRecord, SignalRecord, utcnow


class EvaluationStore:
    redis: redis.Redis
    # book key -> (stored bytes, the book decoded in full or None, its best levels), per process
    _books: dict[str, tuple[bytes, BookRecord | None, BookRecord]]
    _steps: dict[str, tuple[float, Decimal | None]]  # coin -> (valid until, Binance lot step), per process

    def __init__(self, client: redis.Redis):
        super().__init__(client)
        self._books = {}
        self._steps = {}
        self._save_premiums = client.register_script(self._SAVE_PREMIUMS)


    _TAKE_DIRTY = """
    local changed = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
    redis.call('DEL', KEYS[1], KEYS[2])
    return changed
    """

    def mark_dirty(self, symbols: Sequence[str], at: float, claim_ms: int = 2000) -> bool:
        """Note that symbols changed at `at` (an earlier unevaluated change keeps its time); True when
        no batch task is queued, so the caller must enqueue one (the flag lapses after claim_ms)."""
        if not symbols:
            return False
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(keys.DIRTY_KEY, {symbol: at for symbol in symbols}, nx=True)
        pipe.expire(keys.DIRTY_KEY, keys.TTL_DIRTY)
        pipe.set(keys.EVALUATING_KEY, "1", nx=True, px=claim_ms)
        return bool(pipe.execute()[-1])

    def take_dirty(self) -> list[tuple[str, float]]:
        """Every changed coin with the time of its oldest unevaluated change, oldest first; clears
        the set and the queued flag atomically."""
        raw = self.redis.eval(self._TAKE_DIRTY, 2, keys.DIRTY_KEY, keys.EVALUATING_KEY)
        return [(raw[i].decode() if isinstance(raw[i], bytes) else raw[i], float(raw[i + 1])) for i in range(0, len(raw), 2)]

    def pending_changes(self) -> int:
        return int(self.redis.zcard(keys.DIRTY_KEY))

    def evaluation_context(self, symbol: str, fx_source: str) -> EvaluationContext:
        """Everything one evaluation of one coin reads from Redis, in one round trip: its books in full
        and its lot step read afresh (the pair path sizes orders with them)."""
        return self.evaluation_contexts([symbol], fx_source, fresh=True)[symbol]

    def evaluation_contexts(self, symbols: Sequence[str], fx_source: str, *, fresh: bool = False) -> dict[str, EvaluationContext]:
        """evaluation_context for many coins in one round trip of a few commands: what they share is
        read once; lot steps, which change about never, are cached for a minute. Each book comes with
        its best level only (all the premium needs), unless this process already decoded that version;
        full_books(coin) decodes the rest for the coins worth walking. fresh: full books, steps re-read."""
        symbols = list(symbols)
        now = utcnow().timestamp()
        steps_due = symbols if fresh else [s for s in symbols if self._steps.get(s, (0.0, None))[0] <= now]
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.fx_key(fx_source))
        pipe.hgetall(keys.fx_key("reference"))
        pipe.get(keys.LIMITS_VERSION_KEY)
        pipe.get(keys.KILL_KEY)
        pipe.get(keys.BREAKER_KEY)
        pipe.ttl(keys.BREAKER_KEY)
        pipe.hmget(keys.METRICS_KEY, "total_balance", "pnl_today", "pnl_total", "timestamp")
        pipe.hget(keys.RISK_KEY, "weighted")
        pipe.zrangebyscore(keys.fx_history_key(fx_source), now - 60, "+inf", start=0, num=1)
        pipe.get(keys.RECONCILIATION_KEY)
        book_keys = [key for s in symbols for key in (keys.book_key("upbit", s), keys.book_key("binance", s))]
        pipe.mget(book_keys)
        pipe.smismember(keys.WARNINGS_KEY, symbols)
        pipe.smismember(keys.PAUSED_KEY, symbols)
        pipe.hmget(keys.RISK_KEY, [f for s in symbols for f in (f"vol:{s}", f"weight:{s}")])
        pipe.mget([keys.exposure_key(s) for s in symbols])
        for symbol in steps_due:
            pipe.hget(keys.rules_key("binance", symbol), "step_size")
        raw = pipe.execute()
        shared = self._shared_context(*raw[:10])
        books, warnings, paused, risk, exposures = raw[10:15]
        for symbol, step in zip(steps_due, raw[15:], strict=True):
            self._steps[symbol] = (now + self.STEP_CACHE_S, Decimal(text(step)) if step else None)
        contexts = {}
        for i, symbol in enumerate(symbols):
            vol, weight = risk[2 * i], risk[2 * i + 1]
            book = self._full_of if fresh else self._top_of
            contexts[symbol] = EvaluationContext(
                upbit=book(book_keys[2 * i], books[2 * i]),
                binance=book(book_keys[2 * i + 1], books[2 * i + 1]),
                market_warning=bool(warnings[i]), paused=bool(paused[i]), lot_step=self._steps[symbol][1],
                volatility=float(text(vol)) if vol else None, weight=float(text(weight)) if weight else None,
                exposure_krw=int(exposures[i] or 0), **shared)
        return contexts

    STEP_CACHE_S = 60.0

    def _top_of(self, key: str, raw: bytes | None) -> BookRecord | None:
        """The book stored at key: the decoded one if this version was decoded before, else its best
        bid and ask only (the raw bytes are kept for full_books)."""
        if raw is None:
            self._books.pop(key, None)
            return None
        cached = self._books.get(key)
        if cached is not None and cached[0] == raw:
            return cached[1] or cached[2]
        data = orjson.loads(raw)
        top = BookRecord(data["exchange"], data["symbol"], levels_from_json(data["bids"][:1]),
                         levels_from_json(data["asks"][:1]), datetime.fromisoformat(data["timestamp"]),
                         datetime.fromisoformat(data["received_at"]) if data.get("received_at") else None)
        self._books[key] = (raw, None, top)
        return top

    def _full_of(self, key: str, raw: bytes | None) -> BookRecord | None:
        """The book stored at key, in full (decoded once per version)."""
        if raw is None:
            self._books.pop(key, None)
            return None
        cached = self._books.get(key)
        if cached is not None and cached[0] == raw and cached[1] is not None:
            return cached[1]
        book = decode_book(raw)
        self._books[key] = (raw, book, book)
        return book

    def full_books(self, symbol: str) -> tuple[BookRecord | None, BookRecord | None]:
        """(Upbit, Binance) books of a coin in full, as the last evaluation_contexts read them."""
        out = []
        for exchange in ("upbit", "binance"):
            cached = self._books.get(keys.book_key(exchange, symbol))
            out.append(None if cached is None else self._full_of(keys.book_key(exchange, symbol), cached[0]))
        return out[0], out[1]

    def _shared_context(self, fx, reference, version, kill, breaker, breaker_ttl, total, weighted, fx_before,
                        reconciliation) -> dict:
        return dict(
            fx=decode_record(FxRecord, fx),
            reference_fx=decode_record(FxRecord, reference),
            limits_version=int(version or 0),
            kill_switch=None if kill is None else text(kill) == "1",
            breaker=(text(breaker), max(int(breaker_ttl), 0)) if breaker is not None else None,
            reconciled=bool((fresh_reconciliation(reconciliation) or {}).get("ok")),
            total_balance=Decimal(text(total[0])) if total[0] else None,
            pnl=(Decimal(text(total[1])), Decimal(text(total[2])), datetime.fromisoformat(text(total[3])))
            if total[1] and total[2] and total[3] else None,
            weighted_symbols=int(text(weighted)) if weighted else 0,
            fx_minute_ago=decode_sample_value(fx_before[0]) if fx_before else None,
        )

    # ARGV: ttl, sample period (ms), history (s), then per coin: coin, epoch seconds, the premium's and the
    # Upbit mid's history members (codec.encode_sample),
    # and the hash's field/value pairs (PREMIUM_FIELDS). The history keeps one sample per period.
    _SAVE_PREMIUMS = """
    local ttl, sample_ms, history_s = ARGV[1], ARGV[2], tonumber(ARGV[3])
    local width = 4 + 2 * tonumber(ARGV[4])
    local index = ARGV[5] .. 'index:premiums'
    for a = 6, #ARGV, width do
      local coin, ts = ARGV[a], ARGV[a + 1]
      local key = ARGV[5] .. 'premium:' .. coin
      redis.call('HSET', key, unpack(ARGV, a + 4, a + width - 1))
      redis.call('EXPIRE', key, ttl)
      redis.call('ZADD', index, ts, coin)
      local history = ARGV[5] .. 'premium:history:' .. coin
      if redis.call('SET', history .. ':sampled', '1', 'NX', 'PX', sample_ms) then
        local mids = ARGV[5] .. 'mids:' .. coin
        redis.call('ZADD', history, ts, ARGV[a + 2])
        redis.call('ZADD', mids, ts, ARGV[a + 3])
        for _, k in ipairs({history, mids}) do
          redis.call('ZREMRANGEBYSCORE', k, '-inf', tonumber(ts) - history_s)
          redis.call('EXPIRE', k, history_s)
        end
      end
    end
    redis.call('EXPIRE', index, ttl)
    return 0
    """

    def save_evaluations(self, premiums: Sequence[PremiumRecord], signals: Sequence[SignalRecord], history_seconds: int,
                         *, oldest_change: float | None = None, sample_every: float = 1.0) -> None:
        """A batch's results in one round trip: each coin's premium (sampled into its history at most
        once per sample_every), the signals (announced after they are stored), and the batch's size
        and the age of its oldest change (arbitrage:stats:batches, for the capacity benchmark)."""
        execute_scripted(self.redis, lambda pipe: self._queue_evaluations(pipe, premiums, signals, history_seconds,
                                                                          oldest_change, sample_every), self._save_premiums)

    def _queue_evaluations(self, pipe, premiums, signals, history_seconds, oldest_change, sample_every) -> None:
        now = utcnow().timestamp()
        if premiums:
            names = [f.name for f in dataclasses.fields(PremiumRecord)]
            args: list = [keys.TTL_PREMIUM, max(1, int(sample_every * 1000)), history_seconds, len(names), f"{keys.PREFIX}:"]
            for record in premiums:
                ts = record.timestamp.timestamp()
                args += [record.symbol, f"{ts:.6f}", encode_sample(ts, record.premium_pct), encode_sample(ts, record.upbit_mid)]
                for name in names:
                    args += [name, encode_value(getattr(record, name))]
            pipe.evalsha(self._save_premiums.sha, 0, *args)
        for signal in signals:
            queue_indexed(pipe, keys.index_key("signals"), keys.signal_key(signal.symbol), signal.symbol, signal,
                          keys.TTL_SIGNAL, announce=keys.SIGNALS_CHANNEL)
        if oldest_change is not None:
            pipe.lpush(keys.BATCHES_KEY, f"{now:.6f}:{len(premiums)}:{(now - oldest_change) * 1000:.3f}")
            pipe.ltrim(keys.BATCHES_KEY, 0, keys.BATCH_SAMPLES - 1)
            pipe.expire(keys.BATCHES_KEY, keys.TTL_METRICS)

    def batch_samples(self) -> list[tuple[float, int, float]]:
        """(finished at, coins evaluated, age of the oldest change in ms) of the last batches, newest first."""
        out = []
        for raw in self.redis.lrange(keys.BATCHES_KEY, 0, -1):
            at, n, age = text(raw).split(":")
            out.append((float(at), int(n), float(age)))
        return out

    def claim_pairs(self, symbols: Sequence[str], ttl_ms: int) -> list[str]:
        """Claim a queued pair per coin; the coins newly claimed must be enqueued (the pair task clears
        its claim when it starts: an opportunity seen while a pair runs queues exactly one more)."""
        pipe = self.redis.pipeline(transaction=False)
        for symbol in symbols:
            pipe.set(keys.pair_claim_key(symbol), "1", nx=True, px=ttl_ms)
        return [symbol for symbol, ok in zip(symbols, pipe.execute(), strict=True) if ok]

    def clear_pair_claim(self, symbol: str) -> None:
        self.redis.delete(keys.pair_claim_key(symbol))

    def first_rejections(self, blocks: Sequence[tuple[str, str]], every_ms: int = 3000) -> list[tuple[str, str]]:
        """Of (coin, check) blocks, those not recorded in the last every_ms (a block repeats every tick)."""
        if not blocks:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for symbol, check in blocks:
            pipe.set(keys.rejected_key(symbol, check), "1", nx=True, px=every_ms)
        return [key for key, ok in zip(blocks, pipe.execute(), strict=True) if ok]

