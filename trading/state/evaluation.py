"""Batched evaluation: the coins that changed, their contexts in one round trip, their results in another.

arbitrage:dirty (sorted set, coin -> epoch seconds of its oldest change not yet evaluated) and
arbitrage:evaluating (a flag: one batch task is queued) are written by the feeds, in the script that
writes their books (marketdata.store); a batch takes the set (its oldest part) and holds or clears
the flag in the script that reads the coins' contexts, so a change that lands while a batch runs
queues exactly one more task, or wakes the task that holds the flag (arbitrage:evaluate:wake), and
none is ever left without one.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import orjson
import redis

from marketdata.records import BookRecord, decode_top
from marketdata.store import execute_scripted, key_template

from . import keys
from .accounts import fresh_reconciliation
from .codec import decode_book, decode_record, decode_sample_value, encode_record, encode_sample, encode_value, text
from .indexes import INDEX_MAX_MEMBERS
from .records import EvaluationContext, FxRecord, PremiumRecord, SignalRecord, utcnow

VENUES = ("upbit", "binance")


@dataclasses.dataclass
class BatchResults:
    """What a batch stores: premiums, signals, its sample; the pairs it claims (claim_pairs) and the
    blocks it would record (first_rejections). claimed and first are the answers, once stored."""

    premiums: Sequence[PremiumRecord]
    signals: Sequence[SignalRecord]
    history_seconds: int
    oldest_change: float | None = None
    screened: int | None = None  # coins screened (the batch sample's count); by default the premiums
    sample_every: float = 1.0
    claims: Sequence[str] = ()
    claim_ms: int = 0
    walking: Sequence[str] = ()  # coins worth walking: marked in keys.WALKING_KEY
    blocks: Sequence[tuple[str, str]] = ()
    block_every_ms: int = 3000
    claimed: list[str] = dataclasses.field(default_factory=list)
    first: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def answered(self, replies: list) -> None:
        tail = replies[len(replies) - len(self.claims) - len(self.blocks):]
        self.claimed = [symbol for symbol, ok in zip(self.claims, tail[:len(self.claims)], strict=True) if ok]
        self.first = [block for block, ok in zip(self.blocks, tail[len(self.claims):], strict=True) if ok]


@functools.cache
def _premium_fields() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(PremiumRecord))


class EvaluationStore:
    redis: redis.Redis
    # key -> (stored bytes, decoded), per process: a book or top that did not change is not decoded again
    _decoded: dict[str, tuple[bytes, BookRecord]]

    def __init__(self, client: redis.Redis):
        super().__init__(client)
        self._decoded = {}
        self._save_premiums = client.register_script(self._SAVE_PREMIUMS)
        self._take_changed = client.register_script(self._TAKE_CHANGED)
        # How the script builds each coin's keys (keys.py stays their one owner).
        self._take_changed_args = [
            *key_template(keys.book_top_key, "upbit"), *key_template(keys.book_top_key, "binance"),
            *key_template(keys.exposure_key), *key_template(keys.rules_key, "binance"), "vol:", "weight:",
            *key_template(keys.book_key, "upbit"), *key_template(keys.book_key, "binance"),
        ]
        self._raw_books: dict[str, bytes | None] = {}  # book key -> the full book the last take read

    # The changed coins (ARGV[17] of them, or all: those worth walking first, then the oldest) and, for each, what its evaluation reads: both
    # tops, its caution and pause flags, its risk figures, its exposure, its Binance lot step and, for
    # the coins named after the key templates (those worth walking lately), both full books ('' for the
    # others: full_books reads them if they turn out worth walking); in the same step the coins taken
    # leave the set, the wake list is emptied and the queued flag held or cleared. 12 values a coin.
    _TAKE_CHANGED = """
    -- at most ARGV[17] coins (0: all), the rest wait for the next take: first the changed coins worth
    -- walking lately (ARGV[18..]: those near a signal, whose books the take reads in full), up to half
    -- the batch so the oldest changes never starve, then the oldest changes
    local limit = tonumber(ARGV[17])
    local changed = {}
    for i = 18, #ARGV do
      if limit > 0 and #changed / 2 >= math.max(1, math.floor(limit / 2)) then
        break
      end
      local at = redis.call('ZSCORE', KEYS[1], ARGV[i])
      if at then
        changed[#changed + 1] = ARGV[i]
        changed[#changed + 1] = at
      end
    end
    if #changed > 0 then
      local first = {}
      for i = 1, #changed, 2 do
        first[#first + 1] = changed[i]
      end
      redis.call('ZREM', KEYS[1], unpack(first))
    end
    if limit == 0 or #changed / 2 < limit then
      local oldest = redis.call('ZRANGE', KEYS[1], 0, limit == 0 and -1 or limit - #changed / 2 - 1, 'WITHSCORES')
      if #oldest > 0 then
        redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #oldest / 2 - 1)
        for i = 1, #oldest do
          changed[#changed + 1] = oldest[i]
        end
      end
    end
    redis.call('DEL', KEYS[6])  -- the changes its tokens announced are taken now, or by the next take
    if ARGV[15] == '' or (#changed == 0 and ARGV[16] ~= '1') then
      redis.call('DEL', KEYS[2])  -- not held, or nothing waits: the next change queues a task
    else
      -- still evaluating (or waiting on the wake list for the next change): the feeds need not queue a task
      redis.call('SET', KEYS[2], '1', 'PX', ARGV[15])
    end
    local full = {}
    for i = 18, #ARGV do
      full[ARGV[i]] = true
    end
    local out = {}
    for i = 1, #changed, 2 do
      local coin = changed[i]
      local risk = redis.call('HMGET', KEYS[5], ARGV[9] .. coin, ARGV[10] .. coin)
      out[#out + 1] = coin
      out[#out + 1] = changed[i + 1]
      out[#out + 1] = redis.call('GET', ARGV[1] .. coin .. ARGV[2])
      out[#out + 1] = redis.call('GET', ARGV[3] .. coin .. ARGV[4])
      out[#out + 1] = redis.call('SISMEMBER', KEYS[3], coin)
      out[#out + 1] = redis.call('SISMEMBER', KEYS[4], coin)
      out[#out + 1] = risk[1]
      out[#out + 1] = risk[2]
      out[#out + 1] = redis.call('GET', ARGV[5] .. coin .. ARGV[6])
      out[#out + 1] = redis.call('HGET', ARGV[7] .. coin .. ARGV[8], 'step_size')
      if full[coin] then
        out[#out + 1] = redis.call('GET', ARGV[11] .. coin .. ARGV[12])
        out[#out + 1] = redis.call('GET', ARGV[13] .. coin .. ARGV[14])
      else
        out[#out + 1] = ''
        out[#out + 1] = ''
      end
    end
    return out
    """

    def take_changed(self, fx_source: str, full_for: Sequence[str] = (), *, hold_ms: int | None = None,
                     linger: bool = False, limit: int | None = None, results: BatchResults | None = None,
                     ) -> tuple[list[tuple[str, float]], dict[str, EvaluationContext]]:
        """Every changed coin with the time of its oldest unevaluated change (those of full_for first,
        then the oldest), and its
        context with each book's best levels only (all the premium needs), in one round trip; clears
        the set and the queued flag. The full books of the changed coins in full_for come in the same
        read; full_books gives them (and reads any other's).

        hold_ms: the caller will take again as soon as this batch is done, so the queued flag is kept
        (for hold_ms more) and the feeds queue no task meanwhile; it is cleared only by a take that
        finds nothing, in the same step, so a change never waits without a task to take it.
        linger (with hold_ms): a take that finds nothing keeps the flag too, because the caller will
        wait_for_change and take again; the feeds then leave a token on the wake list instead of
        queueing a task. Every take empties the wake list: what its tokens announced is taken.
        limit: at most this many coins, first those of full_for that changed (the coins worth walking
        lately: near a signal), then the oldest changes; the others stay changed (so a take that
        leaves some is never empty, and the caller takes again at once).

        results: the last batch's, stored (and announced) first in the same round trip, as
        save_results does; what it answers is then in results.claimed and results.first."""
        now = utcnow().timestamp()
        stored = 0

        def queue(pipe):
            nonlocal stored
            if results is not None:
                stored = self._queue_results(pipe, results)
            self._queue_shared(pipe, fx_source, now)
            pipe.evalsha(self._take_changed.sha, 6, keys.DIRTY_KEY, keys.EVALUATING_KEY, keys.WARNINGS_KEY, keys.PAUSED_KEY,
                         keys.RISK_KEY, keys.WAKE_KEY, *self._take_changed_args, "" if hold_ms is None else hold_ms,
                         "1" if linger and hold_ms is not None else "0", limit or 0, *full_for)

        raw = execute_scripted(self.redis, queue, self._take_changed, self._save_premiums)
        if results is not None:
            results.answered(raw[:stored])
            raw = raw[stored:]
        shared = self._shared_context(*raw[:10])
        rows = raw[10]
        changed, contexts = [], {}
        self._raw_books = {}
        for i in range(0, len(rows), 12):
            symbol, at, upbit, binance, warning, paused, vol, weight, exposure, step, upbit_book, binance_book = rows[i:i + 12]
            symbol = text(symbol)
            if upbit_book != b"" and binance_book != b"":  # read (None: no such book)
                self._raw_books[keys.book_key("upbit", symbol)] = upbit_book
                self._raw_books[keys.book_key("binance", symbol)] = binance_book
            changed.append((symbol, float(at)))
            contexts[symbol] = self._context(
                self._decode(keys.book_top_key("upbit", symbol), upbit, lambda raw, s=symbol: decode_top("upbit", s, raw)),
                self._decode(keys.book_top_key("binance", symbol), binance, lambda raw, s=symbol: decode_top("binance", s, raw)),
                warning, paused, vol, weight, exposure, step, shared)
        return changed, contexts

    def evaluation_context(self, symbol: str, fx_source: str) -> EvaluationContext:
        """Everything one evaluation of one coin reads from Redis, in one round trip, its books in
        full (the pair path sizes orders with them)."""
        pipe = self.redis.pipeline(transaction=False)
        self._queue_shared(pipe, fx_source, utcnow().timestamp())
        pipe.mget([keys.book_key(exchange, symbol) for exchange in VENUES])
        pipe.sismember(keys.WARNINGS_KEY, symbol)
        pipe.sismember(keys.PAUSED_KEY, symbol)
        pipe.hmget(keys.RISK_KEY, f"vol:{symbol}", f"weight:{symbol}")
        pipe.get(keys.exposure_key(symbol))
        pipe.hget(keys.rules_key("binance", symbol), "step_size")
        raw = pipe.execute()
        books, warning, paused, (vol, weight), exposure, step = raw[10:]
        upbit, binance = (self._decode(keys.book_key(exchange, symbol), book, decode_book)
                          for exchange, book in zip(VENUES, books, strict=True))
        return self._context(upbit, binance, warning, paused, vol, weight, exposure, step, self._shared_context(*raw[:10]))

    def full_books(self, symbols: Sequence[str]) -> dict[str, tuple[BookRecord | None, BookRecord | None]]:
        """Coin -> its (Upbit, Binance) books in full, as the last take_changed read them (each version
        decoded once); a coin that take did not read is read now, all of them in one round trip."""
        book_keys = [keys.book_key(exchange, symbol) for symbol in symbols for exchange in VENUES]
        missing = [key for key in book_keys if key not in self._raw_books]
        if missing:
            self._raw_books.update(zip(missing, self.redis.mget(missing), strict=True))
        books = [self._decode(key, self._raw_books[key], decode_book) for key in book_keys]
        return {symbol: (books[2 * i], books[2 * i + 1]) for i, symbol in enumerate(symbols)}

    def _decode(self, key: str, raw: bytes | None, decode) -> BookRecord | None:
        if raw is None:
            self._decoded.pop(key, None)
            return None
        cached = self._decoded.get(key)
        if cached is not None and cached[0] == raw:
            return cached[1]
        record = decode(raw)
        self._decoded[key] = (raw, record)
        return record

    @staticmethod
    def _context(upbit, binance, warning, paused, vol, weight, exposure, step, shared: dict) -> EvaluationContext:
        return EvaluationContext(
            upbit=upbit, binance=binance, market_warning=bool(warning), paused=bool(paused),
            lot_step=Decimal(text(step)) if step else None,
            volatility=float(text(vol)) if vol else None, weight=float(text(weight)) if weight else None,
            exposure_krw=int(exposure or 0), **shared)

    @staticmethod
    def _queue_shared(pipe, fx_source: str, now: float) -> None:
        """What every coin's context shares (10 commands; _shared_context reads their replies)."""
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

    def wait_for_change(self, timeout_s: float) -> bool:
        """Block until a feed leaves a token on the wake list (a change since the last take), at most
        timeout_s; True if one came. Only a caller holding the queued flag (take_changed's linger) is
        sent tokens."""
        if timeout_s <= 0:
            return False
        return self.redis.blpop([keys.WAKE_KEY], timeout=max(timeout_s, 0.001)) is not None

    def pending_changes(self) -> int:
        return int(self.redis.zcard(keys.DIRTY_KEY))

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

    # ARGV: ttl, sample period (ms), history (s), the key prefix, then the batch as one JSON list of
    # [coin, epoch seconds, the premium's and the Upbit mid's history members (codec.encode_sample),
    # [the hash's field, value, ...] (PremiumRecord's fields)], every value a string; then the signals
    # (JSON list of [key, index member, [field, value, ...], announcement], or ''), their index, TTL,
    # channel, the index's most members and now. (One argument each, encoded in C: packing the fields
    # as arguments cost the batch more than its arithmetic.) The history keeps one sample per period.
    _SAVE_PREMIUMS = """
    local ttl, sample_ms, history_s, prefix = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
    local index = prefix .. 'index:premiums'
    for _, row in ipairs(cjson.decode(ARGV[5])) do
      local coin, ts = row[1], row[2]
      local key = prefix .. 'premium:' .. coin
      redis.call('HSET', key, unpack(row[5]))
      redis.call('EXPIRE', key, ttl)
      redis.call('ZADD', index, ts, coin)
      local history = prefix .. 'premium:history:' .. coin
      if redis.call('SET', history .. ':sampled', '1', 'NX', 'PX', sample_ms) then
        local mids = prefix .. 'mids:' .. coin
        redis.call('ZADD', history, ts, row[3])
        redis.call('ZADD', mids, ts, row[4])
        for _, k in ipairs({history, mids}) do
          redis.call('ZREMRANGEBYSCORE', k, '-inf', tonumber(ts) - history_s)
          redis.call('EXPIRE', k, history_s)
        end
      end
    end
    redis.call('EXPIRE', index, ttl)
    if ARGV[6] ~= '' then
      local signals, signal_ttl, now = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[11])
      for _, row in ipairs(cjson.decode(ARGV[6])) do
        redis.call('HSET', row[1], unpack(row[3]))
        redis.call('EXPIRE', row[1], signal_ttl)
        redis.call('ZADD', signals, now, row[2])
      end
      redis.call('ZREMRANGEBYSCORE', signals, '-inf', now - signal_ttl)
      redis.call('ZREMRANGEBYRANK', signals, 0, -tonumber(ARGV[10]) - 1)
      redis.call('EXPIRE', signals, signal_ttl)
      for _, row in ipairs(cjson.decode(ARGV[6])) do
        redis.call('PUBLISH', ARGV[9], row[4])
      end
    end
    return 0
    """

    def save_evaluations(self, premiums: Sequence[PremiumRecord], signals: Sequence[SignalRecord], history_seconds: int,
                         *, oldest_change: float | None = None, sample_every: float = 1.0) -> None:
        """Premiums and signals in one round trip (save_results without a batch's claims and blocks)."""
        self.save_results(BatchResults(premiums, signals, history_seconds, oldest_change, sample_every=sample_every))

    def save_results(self, results: BatchResults) -> BatchResults:
        """A batch's results in one round trip: each coin's premium (sampled into its history at most
        once per sample_every), the signals (announced after they are stored), the batch's size and
        the age of its oldest change (arbitrage:stats:batches, for the capacity benchmark), and in the
        same step claim_pairs(results.claims) and first_rejections(results.blocks), whose answers it
        sets in results.claimed and results.first."""
        stored = 0

        def queue(pipe):
            nonlocal stored
            stored = self._queue_results(pipe, results)

        results.answered(execute_scripted(self.redis, queue, self._save_premiums)[:stored])
        return results

    def _queue_results(self, pipe, r: BatchResults) -> int:
        """Queue a batch's results; the number of replies they make (BatchResults.answered reads them)."""
        before = len(pipe)
        self._queue_evaluations(pipe, r.premiums, r.signals, r.history_seconds, r.oldest_change, r.sample_every,
                                len(r.premiums) if r.screened is None else r.screened)
        if r.walking:
            now = utcnow().timestamp()
            pipe.zadd(keys.WALKING_KEY, dict.fromkeys(r.walking, now))
            pipe.expire(keys.WALKING_KEY, keys.TTL_WALKING)
        self._queue_claims(pipe, r.claims, r.claim_ms)  # (the claims' and rejections' replies come last: answered)
        self._queue_rejections(pipe, r.blocks, r.block_every_ms)
        return len(pipe) - before

    def _queue_evaluations(self, pipe, premiums, signals, history_seconds, oldest_change, sample_every, screened) -> None:
        """One script call stores the premiums and the signals (each hash, its index entry as
        indexes.index_add keeps it, then its announcement: stored before announced)."""
        now = utcnow().timestamp()
        if premiums or signals:
            names = _premium_fields()
            rows = []
            for record in premiums:
                ts = record.timestamp.timestamp()
                fields = []
                for name in names:
                    fields += (name, encode_value(getattr(record, name)))
                rows.append((record.symbol, f"{ts:.6f}", encode_sample(ts, record.premium_pct),
                             encode_sample(ts, record.upbit_mid), fields))
            announced = []
            for signal in signals:
                encoded = encode_record(signal)
                announced.append((keys.signal_key(signal.symbol), signal.symbol, [v for kv in encoded.items() for v in kv],
                                  orjson.dumps(encoded).decode()))
            pipe.evalsha(self._save_premiums.sha, 0, keys.TTL_PREMIUM, max(1, int(sample_every * 1000)), history_seconds,
                         f"{keys.PREFIX}:", orjson.dumps(rows), orjson.dumps(announced) if announced else "",
                         keys.index_key("signals"), keys.TTL_SIGNAL, keys.SIGNALS_CHANNEL, INDEX_MAX_MEMBERS, f"{now:.6f}")
        if oldest_change is not None:
            pipe.lpush(keys.BATCHES_KEY, f"{now:.6f}:{screened}:{(now - oldest_change) * 1000:.3f}")
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
        self._queue_claims(pipe, symbols, ttl_ms)
        return [symbol for symbol, ok in zip(symbols, pipe.execute(), strict=True) if ok]

    @staticmethod
    def _queue_claims(pipe, symbols: Sequence[str], ttl_ms: int) -> None:
        for symbol in symbols:
            pipe.set(keys.pair_claim_key(symbol), "1", nx=True, px=ttl_ms)

    def clear_pair_claim(self, symbol: str) -> None:
        self.redis.delete(keys.pair_claim_key(symbol))

    def first_rejections(self, blocks: Sequence[tuple[str, str]], every_ms: int = 3000) -> list[tuple[str, str]]:
        """Of (coin, check) blocks, those not recorded in the last every_ms (a block repeats every tick)."""
        if not blocks:
            return []
        pipe = self.redis.pipeline(transaction=False)
        self._queue_rejections(pipe, blocks, every_ms)
        return [key for key, ok in zip(blocks, pipe.execute(), strict=True) if ok]

    @staticmethod
    def _queue_rejections(pipe, blocks: Sequence[tuple[str, str]], every_ms: int) -> None:
        for symbol, check in blocks:
            pipe.set(keys.rejected_key(symbol, check), "1", nx=True, px=every_ms)
