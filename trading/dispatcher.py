"""Turn book changes into evaluations: at most one pending evaluation per coin, no polling.

The feeds publish which books changed on `arbitrage:ticks`; for each coin named, the dispatcher
claims `arbitrage:pending:{coin}` (SET NX PX) and enqueues one evaluation only if the claim is new.
The task clears the claim when it starts, so a burst of ticks costs one task, and a tick that lands
during an evaluation costs exactly one more. A claim whose task never ran expires by itself.
"""

from __future__ import annotations

import logging
import threading
import time

import orjson
import redis

from .state import TICKS_CHANNEL, StateManager

log = logging.getLogger(__name__)

FX_SYMBOL = "USDT"


class Dispatcher:
    def __init__(self, state: StateManager, enqueue, claim_ms: int = 2000):
        self.state = state
        self.enqueue = enqueue  # enqueue(symbol)
        self.claim_ms = claim_ms
        self.stop_event = threading.Event()
        self.enqueued = 0
        self._last_beat = 0.0

    def handle(self, data: bytes) -> list[str]:
        """Claim and enqueue the coins named in one tick notification."""
        try:
            names = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("dispatcher: ignoring a malformed notification %r", data[:80])
            return []
        symbols = sorted({n.split(":", 1)[1] for n in names if isinstance(n, str) and ":" in n} - {FX_SYMBOL})
        claimed = self.state.claim_evaluations(symbols, self.claim_ms) if symbols else []
        for symbol in claimed:
            self.enqueue(symbol)
        self.enqueued += len(claimed)
        return claimed

    def run(self) -> None:
        """Listen until stop(); reconnect to Redis with a pause when it goes away."""
        while not self.stop_event.is_set():
            pubsub = self.state.redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(TICKS_CHANNEL)
                while not self.stop_event.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None:
                        self.handle(message["data"])
                    self._heartbeat()
            except redis.RedisError as exc:
                log.error("dispatcher: Redis unavailable (%s); retrying", exc)
                self.stop_event.wait(1.0)
            finally:
                try:
                    pubsub.close()
                except redis.RedisError:
                    pass

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if now - self._last_beat >= 1.0:
            self.state.beat("signals")
            self._last_beat = now

    def stop(self) -> None:
        self.stop_event.set()
