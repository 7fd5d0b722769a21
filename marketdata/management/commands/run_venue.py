"""Run the simulated Upbit + Binance venue until SIGTERM or Ctrl-C."""

import asyncio
import json
import os
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from marketdata.venue.accounts import Accounts
from marketdata.venue.core import Venue
from marketdata.venue.market import MarketModel, make_coins
from marketdata.venue.replay import replay
from marketdata.venue.server import VenueServer


def accounts_from_env() -> Accounts:
    """VENUE_ACCOUNTS: a JSON list of {"exchange", "key", "secret", "balances": {asset: amount}}."""
    accounts = Accounts()
    raw = os.environ.get("VENUE_ACCOUNTS", "").strip()
    if raw:
        try:
            for entry in json.loads(raw):
                accounts.add(entry["exchange"], entry["key"], entry["secret"], entry.get("balances", {}))
        except (ValueError, KeyError, TypeError) as exc:
            raise CommandError(f"VENUE_ACCOUNTS is not a list of accounts: {exc}") from None
    return accounts


class Command(BaseCommand):
    help = "Serve a simulated Upbit and Binance (market data, REST, WebSockets) on local ports."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=settings.VENUE_HOST)
        parser.add_argument("--upbit-port", type=int, default=settings.VENUE_UPBIT_PORT)
        parser.add_argument("--binance-port", type=int, default=settings.VENUE_BINANCE_PORT)
        parser.add_argument("--seed", type=int, default=settings.VENUE_SEED)
        parser.add_argument("--step-hz", type=float, default=settings.VENUE_STEP_HZ,
                            help="model steps (book updates per market) per second")
        parser.add_argument("--coins", type=int, default=10, help="coins listed on both venues (10 real, then synthetic)")
        parser.add_argument("--replay", metavar="FILE", help="drive the books from a recording instead of the model")
        parser.add_argument("--replay-speed", type=float, default=1.0)
        parser.add_argument("--replay-loop", action="store_true")
        parser.add_argument("--churn", type=float, default=0.0, metavar="RATE",
                            help="benchmarks: RATE more book updates per second (both venues), each one level's size")
        parser.add_argument("--firehose", type=float, metavar="RATE",
                            help="benchmarks: stream RATE Binance diff-depth events per second instead of the model")

    def handle(self, *args, **options):
        asyncio.run(self._serve(options))

    async def _serve(self, options):
        model = MarketModel(coins=make_coins(options["coins"]), seed=options["seed"])
        venue = Venue(model, step_hz=options["step_hz"], churn_per_s=options["churn"], seed=options["seed"])
        server = VenueServer(venue, options["host"], options["upbit_port"], options["binance_port"],
                             drive=not options["replay"], accounts=accounts_from_env())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        self.stdout.write(f"venue: upbit {server.upbit_url}  binance {server.binance_url}")
        player = None
        if options["firehose"]:
            player = loop.create_task(server.binance.firehose(options["firehose"]))
        elif options["replay"]:
            player = loop.create_task(replay(venue, options["replay"], speed=options["replay_speed"],
                                             loop_forever=options["replay_loop"]))
        await stop.wait()
        if player:
            player.cancel()
        await server.stop()
