"""Run the Upbit and/or Binance feed workers until SIGTERM or Ctrl-C."""

import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from marketdata.discovery import common_symbols
from marketdata.exceptions import DiscoveryError
from marketdata.feeds.binance import BinanceFeed
from marketdata.feeds.upbit import UpbitFeed
from marketdata.recording import Recorder
from marketdata.store import MarketStore


def build_feeds(exchanges, symbols, state, recorder=None):
    """Create the feed workers for the given exchanges from settings."""
    common = dict(
        depth=settings.FEED_BOOK_DEPTH,
        recorder=recorder,
        max_backoff=settings.FEED_RECONNECT_MAX_BACKOFF,
        max_connection_age=settings.FEED_MAX_CONNECTION_AGE,
    )
    feeds = []
    if "upbit" in exchanges:
        feeds.append(UpbitFeed(state, symbols, ws_url=settings.UPBIT_WS_URL, rest_url=settings.UPBIT_REST_URL,
                               fmt=settings.FEED_UPBIT_FORMAT, **common))
    if "binance" in exchanges:
        feeds.append(BinanceFeed(state, symbols, ws_url=settings.BINANCE_WS_URL, rest_url=settings.BINANCE_REST_URL,
                                 snapshot_limit=settings.FEED_BINANCE_SNAPSHOT_LIMIT,
                                 time_unit=settings.FEED_BINANCE_TIME_UNIT, **common))
    return feeds


class Command(BaseCommand):
    help = "Stream order books from Upbit and Binance into Redis."

    def add_arguments(self, parser):
        parser.add_argument("--exchange", choices=["upbit", "binance", "all"], default="all")
        parser.add_argument("--symbols", help="comma-separated base assets (default: FEED_SYMBOLS, else all common)")
        parser.add_argument("--record", metavar="FILE", help="append every raw message to FILE (JSON lines)")
        parser.add_argument("--discovery-timeout", type=float, default=120.0,
                            help="seconds to keep retrying market discovery while the exchanges are unreachable")

    def discover(self, timeout: float) -> list[str]:
        """Ask both venues which coins they list, retrying while they are unreachable."""
        deadline = time.monotonic() + timeout
        delay = 0.2
        while True:
            try:
                return common_symbols(settings.UPBIT_REST_URL, settings.BINANCE_REST_URL)
            except DiscoveryError as exc:
                if time.monotonic() + delay > deadline:
                    raise CommandError(f"cannot discover the coins listed on both venues: {exc}") from exc
                self.stderr.write(f"feeds: discovery failed ({exc}); retrying in {delay:.1f} s")
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def handle(self, *args, **options):
        symbols = [s.strip().upper() for s in (options["symbols"] or "").split(",") if s.strip()]
        symbols = symbols or settings.FEED_SYMBOLS
        if not symbols:
            symbols = self.discover(options["discovery_timeout"])
        exchanges = ["upbit", "binance"] if options["exchange"] == "all" else [options["exchange"]]
        recorder = Recorder(options["record"]) if options["record"] else None
        state = MarketStore.from_url(settings.REDIS_URL)
        feeds = build_feeds(exchanges, symbols, state, recorder)

        def stop(*_):
            for feed in feeds:
                feed.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"feeds: {', '.join(exchanges)} for {len(symbols)} coins: {', '.join(symbols)}")
        threads = [threading.Thread(target=feed.run, name=f"feed-{feed.exchange}") for feed in feeds]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(0.5)
        if recorder:
            recorder.close()
