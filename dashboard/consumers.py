"""WebSocket consumers: a snapshot on connect, then every update pushed by the relay."""

import hmac
import json
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from trading.engine import get_state

from .relay import METRICS_GROUP, SIGNALS_GROUP, metrics_snapshot, signals_snapshot


class LiveConsumer(AsyncJsonWebsocketConsumer):
    group = ""
    snapshot_interval = 1.0  # seconds: one requested snapshot per connection per second
    last_snapshot = 0.0

    def allowed(self) -> bool:
        token = settings.API_READ_TOKEN
        user = self.scope.get("user")
        if not token or (user is not None and user.is_authenticated):
            return True
        query = dict(part.split("=", 1) for part in self.scope.get("query_string", b"").decode().split("&") if "=" in part)
        return hmac.compare_digest(query.get("token", ""), token)

    async def connect(self):
        if not self.allowed():
            await self.close(code=4401)
            return
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json(await database_sync_to_async(self.snapshot)())

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def push(self, event):
        """Handler for the relay's group messages (type "push")."""
        await self.send_json(event["payload"])

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """Frames are validated: only a JSON object is read; anything else is answered with an error."""
        try:
            content = json.loads(text_data) if text_data is not None else None
        except ValueError:
            content = None
        if not isinstance(content, dict):
            await self.send_json({"type": "error", "error": "send a JSON object, e.g. {\"action\": \"snapshot\"}"})
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        # Read-only streams; a client may ask for a fresh snapshot, at most once per snapshot_interval.
        if not isinstance(content, dict) or content.get("action") != "snapshot":
            return
        now = time.monotonic()
        if now - self.last_snapshot < self.snapshot_interval:
            await self.send_json({"type": "error", "error": "snapshot rate limit: one per second"})
            return
        self.last_snapshot = now
        await self.send_json(await database_sync_to_async(self.snapshot)())

    def snapshot(self) -> dict:
        raise NotImplementedError


class MetricsConsumer(LiveConsumer):
    group = METRICS_GROUP

    def snapshot(self) -> dict:
        return metrics_snapshot(get_state())


class SignalsConsumer(LiveConsumer):
    group = SIGNALS_GROUP

    def snapshot(self) -> dict:
        return signals_snapshot(get_state())
