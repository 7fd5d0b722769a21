"""Keep one batch evaluation queued while changed coins wait: no polling, no work per tick.

The feeds mark the coins whose books changed (`arbitrage:dirty`, each keeping the time of its oldest
unevaluated change) in the script that writes the books, and in the same step set
`arbitrage:evaluating`; only when that flag is new do they publish on `arbitrage:evaluate`. The
dispatcher hears that and enqueues `evaluate_changed`. The task takes every changed coin and clears
the flag at once, so a burst of ticks costs one task, each coin is evaluated on its newest book, and
a tick that lands during a batch costs exactly one more. A flag whose task never ran lapses by itself
(marketdata.store.EVALUATING_MS); the changes wait for the next one. On every (re)subscription the
dispatcher queues one batch if changes wait, in case their announcement came while it was away.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from marketdata.realtime import RealtimeBudget

from .state import EVALUATE_CHANNEL, StateManager

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, state: StateManager, enqueue, realtime: RealtimeBudget | None = None):
        self.state = state
        self.enqueue = enqueue  # enqueue(): queue one batch evaluation
        # A batch that is behind hands the next one to a new task through here: the hot path's priority.
        self.realtime = realtime
        self.stop_event = threading.Event()
        self.enqueued = 0
        self._last_beat = 0.0

    def handle(self, _data: bytes) -> None:
        """A feed set the queued-batch flag: queue the batch."""
        self.enqueue()
        self.enqueued += 1

    def run(self) -> None:
        """Listen until stop(); reconnect to Redis with a pause when it goes away."""
        if self.realtime is not None:
            self.realtime.start()
        while not self.stop_event.is_set():
            pubsub = self.state.redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(EVALUATE_CHANNEL)
                if self.state.pending_changes():
                    self.handle(b"")
                while not self.stop_event.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None:
                        self.handle(message["data"])
                    self._heartbeat()
                    if self.realtime is not None:
                        self.realtime.check()
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
