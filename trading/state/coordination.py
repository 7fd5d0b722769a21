"""Coordination between processes: evaluation claims and locks that expire if their holder dies."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import redis

from . import keys


class CoordinationStore:
    redis: redis.Redis

    _RELEASE = """
    if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
    return 0
    """

    _EXTEND = """
    if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
    return 0
    """

    # signal evaluation: coalescing claims ---------------------------------------------------
    def claim_evaluations(self, symbols: Sequence[str], ttl_ms: int = 2000) -> list[str]:
        """Claim several symbols in one round trip; return those newly claimed."""
        pipe = self.redis.pipeline(transaction=False)
        for symbol in symbols:
            pipe.set(keys.pending_key(symbol), "1", nx=True, px=ttl_ms)
        return [symbol for symbol, ok in zip(symbols, pipe.execute(), strict=True) if ok]

    def clear_evaluation(self, symbol: str) -> None:
        self.redis.delete(keys.pending_key(symbol))

    # locks ----------------------------------------------------------------------------------
    def acquire_lock(self, name: str, ttl_ms: int) -> str | None:
        """A lock that expires by itself if its holder dies; returns the token to release it with."""
        token = uuid.uuid4().hex
        return token if self.redis.set(keys.lock_key(name), token, nx=True, px=ttl_ms) else None

    def extend_lock(self, name: str, token: str, ttl_ms: int) -> bool:
        """Keep a lock we still hold for another ttl_ms; False if it expired or changed hands."""
        return bool(self.redis.eval(self._EXTEND, 1, keys.lock_key(name), token, ttl_ms))

    def release_lock(self, name: str, token: str) -> bool:
        return bool(self.redis.eval(self._RELEASE, 1, keys.lock_key(name), token))
