"""A real third-party client (ccxt, its own signing) works against the venue with only its URLs changed."""

import ccxt
import pytest

from tests.conftest import start_venue

UPBIT_SECRET = "c" * 64


@pytest.fixture(scope="module")
def venue():
    thread = start_venue(3,
                         ("binance", "ccxt-binance-key", "ccxt-binance-secret", {"USDT": "10000", "BTC": "1"}),
                         ("upbit", "ccxt-upbit-key", UPBIT_SECRET, {"KRW": "10000000", "BTC": "1"}))
    yield thread
    thread.stop()


def test_ccxt_binance_loads_markets_reads_books_places_and_cancels(venue):
    base = venue.server.binance_url
    exchange = ccxt.binance({
        "apiKey": "ccxt-binance-key", "secret": "ccxt-binance-secret",
        # Spot only: the venue is not Binance's margin, futures or wallet (sapi) service.
        "options": {"fetchMarkets": {"types": ["spot"]}, "fetchMargins": False, "fetchCurrencies": False},
    })
    exchange.urls["api"]["public"] = exchange.urls["api"]["private"] = base + "/api/v3"
    markets = exchange.load_markets()
    assert "BTC/USDT" in markets and markets["BTC/USDT"]["precision"]["amount"] == 0.00001
    book = exchange.fetch_order_book("BTC/USDT", 5)
    assert book["bids"][0][0] < book["asks"][0][0]
    order = exchange.create_order("BTC/USDT", "limit", "sell", 0.01, round(book["asks"][0][0] * 2, 2))
    assert order["status"] == "open"
    assert exchange.fetch_order(order["id"], "BTC/USDT")["status"] == "open"
    assert exchange.cancel_order(order["id"], "BTC/USDT")["status"] == "canceled"
    filled = exchange.create_order("BTC/USDT", "market", "buy", 0.01)
    assert filled["status"] == "closed" and filled["filled"] == 0.01
    assert exchange.fetch_balance()["BTC"]["total"] > 1


def test_ccxt_upbit_loads_markets_reads_books_places_and_cancels(venue):
    exchange = ccxt.upbit({"apiKey": "ccxt-upbit-key", "secret": UPBIT_SECRET})
    exchange.hostname = venue.server.upbit_url.removeprefix("http://")
    exchange.urls["api"] = {"public": "http://{hostname}", "private": "http://{hostname}"}
    markets = exchange.load_markets()
    assert {"BTC/KRW", "USDT/KRW"} <= set(markets)
    book = exchange.fetch_order_book("BTC/KRW")
    assert book["bids"][0][0] < book["asks"][0][0]
    assert exchange.fetch_balance()["KRW"]["free"] == 10_000_000
    bid = book["bids"][0][0] // 2 // 1000 * 1000  # far below the book, on the 1,000 KRW tick
    order = exchange.create_order("BTC/KRW", "limit", "buy", 0.001, bid)
    assert order["status"] == "open"
    exchange.cancel_order(order["id"])  # Upbit answers with the order as accepted
    assert exchange.fetch_order(order["id"])["status"] == "canceled"
