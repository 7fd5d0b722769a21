"""Signals and premiums: what the evaluations conclude, and the premium history the risk model fits."""

from __future__ import annotations

from decimal import Decimal

import redis

from . import keys
from .codec import decode_record, decode_samples, encode_sample, text
from .indexes import list_indexed, save_indexed
from .records import PremiumRecord, SignalRecord


class SignalStore:
    redis: redis.Redis

    # signals --------------------------------------------------------------------------------
    def save_signal(self, signal: SignalRecord) -> None:
        """Store a signal and announce it on SIGNALS_CHANNEL in the same round trip."""
        save_indexed(self.redis, keys.index_key("signals"), keys.signal_key(signal.symbol), signal.symbol, signal,
                     keys.TTL_SIGNAL, announce=keys.SIGNALS_CHANNEL)

    def get_signal(self, symbol: str) -> SignalRecord | None:
        return decode_record(SignalRecord, self.redis.hgetall(keys.signal_key(symbol)))

    def list_signals(self) -> list[SignalRecord]:
        return list_indexed(self.redis, keys.index_key("signals"), SignalRecord, keys.signal_key, keys.TTL_SIGNAL)

    # premiums -------------------------------------------------------------------------------
    def save_premium(self, record: PremiumRecord, history_seconds: int, sample_every: float = 1.0) -> None:
        """Store the latest premium, and sample it into a rolling history (at most once a period): one
        evaluation's save_evaluations."""
        self.save_evaluations([record], [], history_seconds, sample_every=sample_every)

    def sample_premium(self, symbol: str, ts: float, premium_pct: Decimal, history_seconds: int,
                       upbit_mid: Decimal | None = None, pipe=None) -> None:
        """Add one sample (unthrottled) to a coin's premium history (percent) and, when given, to its
        Upbit mid history; both keep history_seconds before ts."""
        own = pipe is None
        pipe = self.redis.pipeline(transaction=False) if own else pipe
        series = [keys.premium_history_key(symbol)]
        pipe.zadd(series[0], {encode_sample(ts, premium_pct): ts})
        if upbit_mid is not None:
            series.append(keys.mids_key(symbol))
            pipe.zadd(series[1], {encode_sample(ts, upbit_mid): ts})
        for key in series:
            pipe.zremrangebyscore(key, "-inf", ts - history_seconds)
            pipe.expire(key, history_seconds)
        if own:
            pipe.execute()

    def get_premium(self, symbol: str) -> PremiumRecord | None:
        return decode_record(PremiumRecord, self.redis.hgetall(keys.premium_key(symbol)))

    def list_premiums(self) -> list[PremiumRecord]:
        return list_indexed(self.redis, keys.PREMIUMS_INDEX_KEY, PremiumRecord, keys.premium_key, keys.TTL_PREMIUM)

    def premium_history(self, symbol: str) -> list[tuple[float, Decimal]]:
        """The premium (percent) sampled about once a second: what the risk model is fitted on."""
        return decode_samples(self.redis.zrange(keys.premium_history_key(symbol), 0, -1))

    def mid_history(self, symbol: str) -> list[tuple[float, Decimal]]:
        """Upbit mid prices sampled with the premium (not used by the risk model: a premium book
        does not hold the coin's price)."""
        return decode_samples(self.redis.zrange(keys.mids_key(symbol), 0, -1))

    def premium_symbols(self) -> list[str]:
        return [text(m) for m in self.redis.zrange(keys.PREMIUMS_INDEX_KEY, 0, -1)]
