"""The one module that talks to the Channels layer.

The relay process hears stored signals and executions on Redis pub/sub and pushes them to the
`signals` group: executions as they happen, each coin's newest signal at most twice a second; it pushes `arbitrage:metrics:live` to the `metrics` group every
second. channels_redis drops messages for a client whose queue is full, so a slow browser loses
updates instead of slowing the loop or the other clients.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
import redis.asyncio as aioredis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

from trading.state import EXECUTIONS_CHANNEL, SIGNALS_CHANNEL, StateManager, encode_record

log = logging.getLogger(__name__)

METRICS_GROUP = "metrics"
SIGNALS_GROUP = "signals"


def metrics_snapshot(state: StateManager) -> dict:
    """What a metrics client sees: the live record plus the controls' state."""
    from trading import ledger

    record = state.get_metrics()
    breaker = state.breaker()
    beats = state.heartbeats()
    return {
        "type": "metrics",
        "metrics": encode_record(record) if record else None,
        "kill_switch": bool(state.kill_switch()),
        "circuit_breaker": {"reason": breaker[0], "seconds_left": breaker[1]} if breaker else None,
        "heartbeats": {k: v.isoformat() if v else None for k, v in beats.items()},
        "paused": sorted(state.paused_symbols()),
        "rebalance": state.rebalance(),
        "balances": [[venue, asset, str(amount)] for (venue, asset), amount in sorted(ledger.balances().items())],
        # Per the accounting model (docs/ACCOUNTING.md): equity change less flows.
        "pnl_today": str(record.pnl_today) if record else None,
        "pnl_total": str(record.pnl_total) if record else None,
    }


def signals_snapshot(state: StateManager) -> dict:
    return {
        "type": "snapshot",
        "signals": [encode_record(s) for s in state.list_signals()],
        "premiums": [encode_record(p) for p in state.list_premiums()],
    }


def announce_control(state: StateManager) -> None:
    """Push the controls' new state to every dashboard at once (kill switch pressed, ...)."""
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(METRICS_GROUP, {"type": "push", "payload": metrics_snapshot(state)})


class Relay:
    """Executions are pushed as they happen; a coin's signals at most once per signal_every (the
    newest one: a coin with a standing premium is announced on every tick, hundreds a second across
    the market, more than a screen can show or a browser needs)."""

    def __init__(self, state: StateManager, metrics_every: float = 1.0, signal_every: float = 0.5):
        self.state = state
        self.metrics_every = metrics_every
        self.signal_every = signal_every
        self.layer = get_channel_layer()
        self.stopping = asyncio.Event()
        self.forwarded = 0
        self._pushed_at: dict[str, float] = {}  # coin -> when its last signal was pushed
        self._waiting: dict[str, dict] = {}  # coin -> its newest signal not yet pushed

    async def run(self) -> None:
        await asyncio.gather(self._signals(), self._metrics(), self._held_signals())

    async def _push(self, kind: str, data: dict) -> None:
        await self.layer.group_send(SIGNALS_GROUP, {"type": "push", "payload": {"type": kind, "data": data}})
        self.forwarded += 1

    async def _signal(self, data: dict) -> None:
        coin = data.get("symbol", "")
        now = time.monotonic()
        if now - self._pushed_at.get(coin, float("-inf")) >= self.signal_every:
            self._pushed_at[coin] = now
            self._waiting.pop(coin, None)
            await self._push("signal", data)
        else:
            self._waiting[coin] = data

    async def _held_signals(self) -> None:
        """Push each held signal once its coin's interval has passed."""
        while not self.stopping.is_set():
            await asyncio.sleep(self.signal_every / 5)
            now = time.monotonic()
            for coin in [c for c in self._waiting if now - self._pushed_at.get(c, float("-inf")) >= self.signal_every]:
                self._pushed_at[coin] = now
                try:
                    await self._push("signal", self._waiting.pop(coin))
                except Exception:  # the next signal is pushed all the same
                    log.exception("relay: pushing a held signal failed")

    async def _signals(self) -> None:
        while not self.stopping.is_set():
            client = aioredis.Redis.from_url(settings.REDIS_URL)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(SIGNALS_CHANNEL, EXECUTIONS_CHANNEL)
                while not self.stopping.is_set():
                    message = await pubsub.get_message(timeout=0.5)
                    if message is None:
                        continue
                    data = orjson.loads(message["data"])
                    if message["channel"] == SIGNALS_CHANNEL.encode():
                        await self._signal(data)
                    else:
                        await self._push("execution", data)
            except (aioredis.RedisError, OSError) as exc:
                log.error("relay: Redis unavailable (%s); retrying", exc)
                await asyncio.sleep(1)
            finally:
                await pubsub.aclose()
                await client.aclose()

    async def _metrics(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                payload = await asyncio.to_thread(metrics_snapshot, self.state)
                await self.layer.group_send(METRICS_GROUP, {"type": "push", "payload": payload})
                await asyncio.to_thread(self.state.beat, "relay")
            except Exception:  # a bad second must not end the pushes
                log.exception("relay: metrics push failed")
            await asyncio.sleep(max(0.0, self.metrics_every - (time.monotonic() - started)))
