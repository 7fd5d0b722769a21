"""Coordination between processes: locks that expire if their holder dies."""

from __future__ import annotations

import uuid

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
