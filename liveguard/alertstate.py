"""The notifications' hot state in Redis: every key under arbitrage:alerts:*, each with a TTL.

Rate windows per channel, the claim a delivery holds while it sends, and the Telegram bot's
one-time confirmation codes. Atomic Redis operations, so several workers agree without locks.
"""

from __future__ import annotations

from functools import cache

import redis
from django.conf import settings

PREFIX = "arbitrage:alerts"
# A delivery's claim outlives the task's hard time limit (30 s), so two workers never send one notification.
SEND_CLAIM_MS = 60_000

# Delete the key only while it holds the expected value: a code is used once, by its own chat.
_COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


class AlertState:
    def __init__(self, client: redis.Redis):
        self.redis = client
        self._compare_and_delete = client.register_script(_COMPARE_AND_DELETE)

    @classmethod
    def default(cls) -> AlertState:
        return cls(_client(settings.REDIS_URL))

    def take_rate(self, channel: str, per_minute: int, now_s: float) -> bool:
        """Count one notification in the channel's current minute; False once the minute is full."""
        key = f"{PREFIX}:rate:{channel}:{int(now_s // 60)}"
        pipe = self.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, 120)
        count, _ = pipe.execute()
        return int(count) <= per_minute

    def claim_send(self, notification_id: int) -> bool:
        return bool(self.redis.set(f"{PREFIX}:sending:{notification_id}", "1", nx=True, px=SEND_CLAIM_MS))

    def release_send(self, notification_id: int) -> None:
        self.redis.delete(f"{PREFIX}:sending:{notification_id}")

    def set_confirmation(self, chat_id: int, code: str, ttl_s: int) -> None:
        """Replace the chat's pending confirmation: only the latest code works."""
        self.redis.set(f"{PREFIX}:telegram:confirm:{chat_id}", code, ex=ttl_s)

    def use_confirmation(self, chat_id: int, code: str) -> bool:
        """True once for the chat's current code; False when wrong, used or expired."""
        return bool(self._compare_and_delete(keys=[f"{PREFIX}:telegram:confirm:{chat_id}"], args=[code]))
