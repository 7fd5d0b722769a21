"""ccxt pro (async, WebSocket) watches order books on both of the venue's dialects, configured as a
user would point it at a test host: only its URLs changed.

Binance: ccxt pro connects to `/ws/<n>` (not a stream name), sends SUBSCRIBE, waits for
`{"result":null,"id":n}`, takes the REST depth snapshot and applies the diff stream by update id.
Upbit: one JSON request on /websocket/v1, whole top-of-book messages in binary frames.
"""

import asyncio
import time

import ccxt.pro
import pytest
import requests

from marketdata.venue.core import Venue
from marketdata.venue.market import MarketModel
from marketdata.venue.server import VenueServer, VenueThread

SPOT_ONLY = {"fetchMarkets": {"types": ["spot"]}, "fetchMargins": False, "fetchCurrencies": False}


@pytest.fixture(scope="module")
def venue():
    thread = VenueThread(VenueServer(Venue(MarketModel(seed=5), step_hz=10))).start()
    yield thread
    thread.stop()


def binance_pro(venue) -> ccxt.pro.binance:
    # Spot only: the venue is not Binance's margin, futures or wallet (sapi) service.
    exchange = ccxt.pro.binance({"options": dict(SPOT_ONLY)})
    exchange.urls["api"]["public"] = exchange.urls["api"]["private"] = venue.server.binance_url + "/api/v3"
    exchange.urls["api"]["ws"]["spot"] = venue.server.binance_ws_url + "/ws"
    return exchange


def upbit_pro(venue) -> ccxt.pro.upbit:
    exchange = ccxt.pro.upbit()
    exchange.hostname = venue.server.upbit_url.removeprefix("http://")
    exchange.urls["api"] = {"public": "http://{hostname}", "private": "http://{hostname}", "ws": "ws://{hostname}/websocket/v1"}
    return exchange


def rest_binance(venue, symbol: str) -> dict:
    return requests.get(f"{venue.server.binance_url}/api/v3/depth", params={"symbol": symbol, "limit": 1000}, timeout=5).json()


def rest_upbit(venue, market: str) -> dict:
    return requests.get(f"{venue.server.upbit_url}/v1/orderbook", params={"markets": market}, timeout=5).json()[0]


def levels(rows) -> list[tuple[float, float]]:
    return [(float(p), float(q)) for p, q, *_ in rows]


def upbit_levels(units, side: str) -> list[tuple[float, float]]:
    return [(float(u[f"{side}_price"]), float(u[f"{side}_size"])) for u in units]


async def quiet(venue, seconds: float = 0.4) -> None:
    """Stop the market and let what is in flight arrive, so a book can be compared with REST."""
    await asyncio.to_thread(venue.call, venue.server.control, None, "pause")
    await asyncio.sleep(seconds)


async def resume(venue) -> None:
    await asyncio.to_thread(venue.call, venue.server.control, None, "resume")


async def assert_binance_book_is_rest(venue, exchange, symbol: str, market_id: str) -> int:
    """ccxt's book is the venue's whole book (the snapshot covers every level), and at the same id."""
    book = exchange.orderbooks[symbol]
    rest = await asyncio.to_thread(rest_binance, venue, market_id)
    assert book["nonce"] == rest["lastUpdateId"]
    assert [tuple(level) for level in book["bids"]] == levels(rest["bids"])
    assert [tuple(level) for level in book["asks"]] == levels(rest["asks"])
    return book["nonce"]


async def assert_upbit_book_is_rest(venue, exchange, symbol: str, market: str) -> None:
    book = exchange.orderbooks[symbol]
    rest = await asyncio.to_thread(rest_upbit, venue, market)
    depth = len(book["bids"])
    assert depth >= 15
    assert [tuple(level) for level in book["bids"]] == upbit_levels(rest["orderbook_units"], "bid")[:depth]
    assert [tuple(level) for level in book["asks"]] == upbit_levels(rest["orderbook_units"], "ask")[:len(book["asks"])]


def test_ccxt_pro_watches_order_books_on_both_dialects(venue):
    async def main():
        binance, upbit = binance_pro(venue), upbit_pro(venue)
        try:
            books = await asyncio.wait_for(asyncio.gather(
                binance.watch_order_book("BTC/USDT"), binance.watch_order_book("ETH/USDT"),
                upbit.watch_order_book("BTC/KRW"), upbit.watch_order_book("USDT/KRW"),
            ), timeout=15)
            for book in books:
                assert book["bids"][0][0] < book["asks"][0][0]
            # The client connected to /ws/<n>, not to a stream: the venue let it in and served what
            # it subscribed to over that one connection.
            prefix = venue.server.binance_ws_url + "/ws/"
            assert binance.clients and all(url.startswith(prefix) and url[len(prefix):].isdigit() for url in binance.clients)
            await quiet(venue)
            try:
                await assert_binance_book_is_rest(venue, binance, "BTC/USDT", "BTCUSDT")
                await assert_binance_book_is_rest(venue, binance, "ETH/USDT", "ETHUSDT")
                await assert_upbit_book_is_rest(venue, upbit, "BTC/KRW", "KRW-BTC")
                await assert_upbit_book_is_rest(venue, upbit, "USDT/KRW", "KRW-USDT")
            finally:
                await resume(venue)
        finally:
            await binance.close()
            await upbit.close()

    asyncio.run(main())


@pytest.mark.slow  # about 5 s of live updates
def test_ccxt_pro_keeps_the_book_right_across_the_venues_diff_updates(venue):
    """For a few seconds of live diffs, ccxt's book (never re-snapshotted: its update id only moves
    forward through contiguous diffs) equals the venue's REST book at every pause."""

    async def main():
        binance, upbit = binance_pro(venue), upbit_pro(venue)
        try:
            await asyncio.wait_for(asyncio.gather(binance.watch_order_book("BTC/USDT"), upbit.watch_order_book("BTC/KRW")),
                                   timeout=15)
            nonces, updates, upbit_updates = [], 0, 0
            deadline = time.monotonic() + 4.0
            while time.monotonic() < deadline:
                # Let the venue run for a while: ccxt applies each diff as it comes.
                until = time.monotonic() + 0.8
                while time.monotonic() < until:
                    book = await asyncio.wait_for(binance.watch_order_book("BTC/USDT"), timeout=5)
                    assert book["bids"][0][0] < book["asks"][0][0]
                    updates += 1
                    upbit_book = await asyncio.wait_for(upbit.watch_order_book("BTC/KRW"), timeout=5)
                    assert upbit_book["bids"][0][0] < upbit_book["asks"][0][0]
                    upbit_updates += 1
                await quiet(venue, 0.3)
                try:
                    nonces.append(await assert_binance_book_is_rest(venue, binance, "BTC/USDT", "BTCUSDT"))
                    await assert_upbit_book_is_rest(venue, upbit, "BTC/KRW", "KRW-BTC")
                    ticker = await asyncio.to_thread(
                        lambda: requests.get(f"{venue.server.binance_url}/api/v3/ticker/bookTicker",
                                             params={"symbol": "BTCUSDT"}, timeout=5).json())
                    top = binance.orderbooks["BTC/USDT"]
                    assert top["bids"][0] == [float(ticker["bidPrice"]), float(ticker["bidQty"])]
                    assert top["asks"][0] == [float(ticker["askPrice"]), float(ticker["askQty"])]
                finally:
                    await resume(venue)
            assert len(nonces) >= 3 and nonces == sorted(set(nonces)), nonces
            assert updates >= 10 and upbit_updates >= 10
        finally:
            await binance.close()
            await upbit.close()

    asyncio.run(main())
