"""Push stored signals, executions and live metrics to the dashboards' WebSockets."""

import asyncio
import signal

from django.core.management.base import BaseCommand

from dashboard.relay import Relay
from trading.engine import get_state


class Command(BaseCommand):
    help = "Relay Redis announcements and metrics to the Channels groups the dashboards listen on."

    def handle(self, *args, **options):
        asyncio.run(self._run())

    async def _run(self):
        relay = Relay(get_state())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, relay.stopping.set)
        self.stdout.write("relay: pushing signals, executions and metrics to the dashboards")
        await relay.run()
