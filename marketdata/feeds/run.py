"""Run the Upbit and/or Binance feed workers until SIGTERM or Ctrl-C.

`python -m marketdata.feeds` runs them in a process that reads the project's settings without
setting Django up: no app registry, no models, no Celery, only the feeds' own modules (a feed worker
keeps ~200 books current and needs nothing else). `manage.py run_feeds` is the same run inside Django.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

from django.conf import settings

from marketdata import realtime
from marketdata.discovery import common_symbols
from marketdata.exceptions import DiscoveryError
from marketdata.feeds.binance import BinanceFeed
from marketdata.feeds.upbit import UpbitFeed
from marketdata.recording import Recorder
from marketdata.store import MarketStore

log = logging.getLogger("marketdata.feeds")


class FeedsError(Exception):
    """The feeds cannot start (no coins to stream)."""


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
                               fmt=settings.FEED_UPBIT_FORMAT, realtime=realtime.from_settings("feed upbit"), **common))
    if "binance" in exchanges:
        feeds.append(BinanceFeed(state, symbols, ws_url=settings.BINANCE_WS_URL, rest_url=settings.BINANCE_REST_URL,
                                 realtime=realtime.from_settings("feed binance"),
                                 snapshot_limit=settings.FEED_BINANCE_SNAPSHOT_LIMIT,
                                 time_unit=settings.FEED_BINANCE_TIME_UNIT, **common))
    return feeds


def discover(timeout: float, say=print) -> list[str]:
    """Ask both venues which coins they list, retrying while they are unreachable."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        try:
            return common_symbols(settings.UPBIT_REST_URL, settings.BINANCE_REST_URL)
        except DiscoveryError as exc:
            if time.monotonic() + delay > deadline:
                raise FeedsError(f"cannot discover the coins listed on both venues: {exc}") from exc
            say(f"feeds: discovery failed ({exc}); retrying in {delay:.1f} s")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def add_arguments(parser) -> None:
    parser.add_argument("--exchange", choices=["upbit", "binance", "all"], default="all")
    parser.add_argument("--symbols", help="comma-separated base assets (default: FEED_SYMBOLS, else all common)")
    parser.add_argument("--record", metavar="FILE", help="append every raw message to FILE (JSON lines)")
    parser.add_argument("--discovery-timeout", type=float, default=120.0,
                        help="seconds to keep retrying market discovery while the exchanges are unreachable")


def run(options: dict, say=print, warn=print) -> None:
    """Stream until SIGTERM or SIGINT (options: those of add_arguments)."""
    symbols = [s.strip().upper() for s in (options.get("symbols") or "").split(",") if s.strip()]
    symbols = symbols or settings.FEED_SYMBOLS
    if not symbols:
        symbols = discover(options.get("discovery_timeout", 120.0), warn)
    exchanges = ["upbit", "binance"] if options.get("exchange", "all") == "all" else [options["exchange"]]
    recorder = Recorder(options["record"]) if options.get("record") else None
    state = MarketStore.from_url(settings.REDIS_URL)
    feeds = build_feeds(exchanges, symbols, state, recorder)

    def stop(*_):
        for feed in feeds:
            feed.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    say(f"feeds: {', '.join(exchanges)} for {len(symbols)} coins: {', '.join(symbols)}")
    # This thread only waits, but it shares the feeds' GIL: at normal priority on a busy box it could be
    # preempted while holding it and hold a real-time feed thread back as long. So it runs at their
    # priority too (it uses next to no CPU: no budget to keep).
    realtime.from_settings("feeds' main thread").start()
    threads = [threading.Thread(target=feed.run, name=f"feed-{feed.exchange}") for feed in feeds]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        for thread in threads:
            thread.join(0.5)
    if recorder:
        recorder.close()


def main(argv: list[str] | None = None) -> int:
    """The lean entry point: settings and logging as Django would configure them, without Django's setup."""
    import logging.config

    parser = argparse.ArgumentParser(prog="python -m marketdata.feeds", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    logging.config.dictConfig(settings.LOGGING)
    realtime.settle_heap()  # the modules and settings this process runs on: never a full collection's work again
    try:
        run(options, warn=lambda text: print(text, file=sys.stderr))
    except FeedsError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0
