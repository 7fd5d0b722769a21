"""WebSocket consumers: a snapshot on connect, then every update pushed by the relay."""

import hmac
import json
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from trading.engine import get_state

from .relay import METRICS_GROUP, SIGNALS_GROUP, metrics_snapshot, signals_snapshot

TOKEN_SUBPROTOCOL = "kimp.token."


def _user_token(key: str) -> bool:
    from rest_framework.authtoken.models import Token

    return Token.objects.filter(key=key, user__is_active=True).exists()


class LiveConsumer(AsyncJsonWebsocketConsumer):
    group = ""
    snapshot_interval = 1.0  # seconds: one requested snapshot per connection per second
    last_snapshot = 0.0

    def allowed(self) -> tuple[bool, str | None]:
        """Who may read, and the subprotocol to answer with.

        Open when API_READ_TOKEN is unset. Otherwise a logged-in user (the session cookie), or a token
        client that offers the subprotocol `kimp.token.<token>` (`Sec-WebSocket-Protocol`), with the
        shared read token or a user's own API token. Never a token in the URL: URLs end up in access
        logs and proxies' histories.
        """
        offered = [p for p in self.scope.get("subprotocols") or [] if p.startswith(TOKEN_SUBPROTOCOL)]
        token = settings.API_READ_TOKEN
        user = self.scope.get("user")
        if not token or (user is not None and user.is_authenticated):
            return True, None
        for protocol in offered:
            given = protocol[len(TOKEN_SUBPROTOCOL):]
            if given and (hmac.compare_digest(given, token) or _user_token(given)):
                return True, protocol
        return False, None

    async def connect(self):
        ok, subprotocol = await database_sync_to_async(self.allowed)()
        if not ok:
            await self.close(code=4401)
            return
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept(subprotocol=subprotocol)
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
