"""Turn book changes into batched evaluations: one queued batch task at a time, no polling.

The feeds publish which books changed on `arbitrage:ticks`. The dispatcher adds the coins named to
`arbitrage:dirty` (each keeps the time of its oldest unevaluated change) and, in the same round
trip, sets `arbitrage:evaluating`; only when that flag is new does it enqueue `evaluate_changed`.
The task takes every changed coin and clears the flag at once, so a burst of ticks costs one task,
each coin is evaluated on its newest book, and a tick that lands during a batch costs exactly one
more. A flag whose task never ran lapses by itself; the changes wait for the next one.
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
        self.enqueue = enqueue  # enqueue(): queue one batch evaluation
        self.claim_ms = claim_ms
        self.stop_event = threading.Event()
        self.enqueued = 0
        self._last_beat = 0.0

    def handle(self, data: bytes) -> list[str]:
        """Mark the coins named in one tick notification changed; enqueue a batch if none is queued.
        Returns the coins marked."""
        try:
            names = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("dispatcher: ignoring a malformed notification %r", data[:80])
            return []
        if not isinstance(names, list):
            log.warning("dispatcher: ignoring a notification that is not a list %r", data[:80])
            return []
        symbols = sorted({n.split(":", 1)[1] for n in names if isinstance(n, str) and ":" in n} - {FX_SYMBOL})
        if symbols and self.state.mark_dirty(symbols, time.time(), self.claim_ms):
            self.enqueue()
            self.enqueued += 1
        return symbols

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
