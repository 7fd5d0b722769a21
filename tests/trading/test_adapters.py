"""Signed adapters against the venue over HTTP: signing, auth errors as each exchange sends them."""

import time
from decimal import Decimal as D

import pytest
import requests

from tests.conftest import start_venue
from tests.support import free_port
from trading.exchanges import binance, upbit
from trading.exchanges.errors import AuthError, RateLimited, UnknownOutcome
from trading.exchanges.types import LegOrder
from trading.exchanges.upbit import UpbitAdapter, query_string, token

# Binance's published worked example (rest-api.md, "SIGNED endpoint examples for POST /api/v3/order").
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_QUERY = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
DOC_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
UP_SECRET = "u" * 64  # HS512 wants a 64-byte key


def test_binance_signer_reproduces_the_documented_example():
    assert binance.sign(DOC_SECRET, DOC_QUERY) == DOC_SIGNATURE


@pytest.fixture
def venue_with_accounts():
    thread = start_venue(3,
                         ("upbit", "up-access", UP_SECRET, {"KRW": "1000000", "BTC": "0.5"}),
                         ("binance", "bn-key", "bn-secret", {"USDT": "10000", "BTC": "0.25", "ETH": "0"}))
    yield thread
    thread.stop()


def test_binance_account_over_signed_http(venue_with_accounts):
    adapter = binance.BinanceAdapter(venue_with_accounts.server.binance_url, "bn-key", "bn-secret")
    adapter.sync_clock()
    assert abs(adapter.clock_offset_ms) < 1000
    assert adapter.balance_detail() == {"USDT": (D("10000"), D("0")), "BTC": (D("0.25"), D("0"))}  # zero balances omitted
    assert adapter.used_weight["1M"] >= 20


@pytest.mark.parametrize("key, secret, offset, code", [
    ("bn-key", "wrong-secret", 0, -1022),
    ("nobody", "bn-secret", 0, -2015),
    ("bn-key", "bn-secret", -60_000, -1021),  # our clock a minute behind
    ("bn-key", "bn-secret", 5_000, -1021),  # ahead of the server
])
def test_binance_auth_errors_are_the_exchanges_own(venue_with_accounts, key, secret, offset, code, monkeypatch):
    adapter = binance.BinanceAdapter(venue_with_accounts.server.binance_url, key, secret)
    adapter.clock_offset_ms = offset
    monkeypatch.setattr(adapter, "sync_clock", lambda: None)  # as if the clock could not be measured
    with pytest.raises(AuthError) as info:
        adapter.account()
    assert info.value.code == code


@pytest.mark.parametrize("venue_offset_ms", [-2_000, 6_000, 60_000])  # we are ahead; far behind
def test_binance_clock_off_the_venue_is_measured_and_the_call_retried_once(venue_with_accounts, venue_offset_ms):
    """-1021 means "not processed": the adapter measures the server clock and signs again."""
    venue_with_accounts.call(venue_with_accounts.server.control, "binance", "clock_offset", ms=venue_offset_ms)
    adapter = binance.BinanceAdapter(venue_with_accounts.server.binance_url, "bn-key", "bn-secret")
    assert adapter.balances()["USDT"] == D("10000")
    assert abs(adapter.clock_offset_ms - venue_offset_ms) < 500


def test_upbit_accounts_over_jwt(venue_with_accounts):
    adapter = UpbitAdapter(venue_with_accounts.server.upbit_url, "up-access", UP_SECRET)
    assert adapter.balance_detail() == {"BTC": (D("0.5"), D("0")), "KRW": (D("1000000"), D("0"))}
    assert adapter.remaining_req["default"] == 29


def test_upbit_auth_errors_are_the_exchanges_own(venue_with_accounts):
    base = venue_with_accounts.server.upbit_url
    with pytest.raises(AuthError, match="jwt_verification"):
        UpbitAdapter(base, "up-access", "x" * 64).accounts()
    with pytest.raises(AuthError, match="invalid_access_key"):
        UpbitAdapter(base, "nobody", UP_SECRET).accounts()
    reused = token("up-access", UP_SECRET, nonce="same-nonce")
    assert requests.get(f"{base}/v1/accounts", headers={"Authorization": f"Bearer {reused}"}, timeout=5).status_code == 200
    again = requests.get(f"{base}/v1/accounts", headers={"Authorization": f"Bearer {reused}"}, timeout=5)
    assert again.status_code == 401 and again.json()["error"]["name"] == "nonce_used"
    # A token whose query_hash does not match the query sent.
    forged = token("up-access", UP_SECRET, {"market": "KRW-ETH"})
    bad = requests.get(f"{base}/v1/accounts", params={"market": "KRW-BTC"}, headers={"Authorization": f"Bearer {forged}"}, timeout=5)
    assert bad.json()["error"]["name"] == "invalid_query_payload"
    assert requests.get(f"{base}/v1/accounts", timeout=5).json()["error"]["name"] == "no_authorization_token"


def test_upbit_query_hash_uses_the_unencoded_query():
    assert query_string({"market": "KRW-BTC", "states": ["wait", "watch"]}) == "market=KRW-BTC&states[]=wait&states[]=watch"
    import hashlib

    import jwt

    claims = jwt.decode(token("a", UP_SECRET, {"market": "KRW-BTC"}), UP_SECRET, algorithms=["HS512"])
    assert claims["query_hash"] == hashlib.sha512(b"market=KRW-BTC").hexdigest()
    assert claims["query_hash_alg"] == "SHA512" and claims["access_key"] == "a"


def test_timeouts_and_5xx_are_unknown_outcomes_and_429_is_rate_limited():
    # A port with nothing listening, a server that never answers, and one that answers 503/429.
    with pytest.raises(UnknownOutcome):
        binance.BinanceAdapter(f"http://127.0.0.1:{free_port()}", "k", "s", timeout=0.5).account()
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if "slow" in self.path:
                time.sleep(1.0)
            status = 503 if "fail" in self.path else 429
            self.send_response(status)
            self.send_header("Retry-After", "7")
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            try:
                self.wfile.write(b'{"code":-1003,"msg":"Too much request weight used"}')
            except BrokenPipeError:
                pass  # the client already gave up (the timeout case)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(UnknownOutcome):
            binance.BinanceAdapter(base + "/fail", "k", "s").account()
        with pytest.raises(UnknownOutcome, match="timed out"):
            binance.BinanceAdapter(base + "/slow", "k", "s", timeout=0.3).account()
        with pytest.raises(RateLimited) as info:
            binance.BinanceAdapter(base, "k", "s").account()
        assert info.value.retry_after == 7.0
    finally:
        server.shutdown()


def test_adapters_never_show_their_secret():
    a = binance.BinanceAdapter("http://x", "bn-key-123456", "super-secret-value")
    b = upbit.UpbitAdapter("http://x", "up-key-123456", "another-secret-value")
    for text in (repr(a), str(a), repr(b), str(b)):
        assert "secret" not in text and "123456" not in text


def test_binance_market_and_limit_orders_fill_against_the_book_and_move_balances(venue_with_accounts):
    adapter = binance.BinanceAdapter(venue_with_accounts.server.binance_url, "bn-key", "bn-secret")
    depth = requests.get(f"{venue_with_accounts.server.binance_url}/api/v3/depth", params={"symbol": "BTCUSDT"}, timeout=5).json()
    best_ask = D(depth["asks"][0][0])
    before = adapter.balance_detail()
    order = adapter.place_order("BTCUSDT", "BUY", D("0.01"), client_id="t-buy-1")
    assert order["status"] == "FILLED" and D(order["executedQty"]) == D("0.01")
    spent = D(order["cummulativeQuoteQty"])
    assert spent >= best_ask * D("0.01")
    fee = sum(D(f["commission"]) for f in order["fills"])
    assert fee == D("0.00001") and order["fills"][0]["commissionAsset"] == "BTC"
    after = adapter.balance_detail()
    assert after["USDT"][0] == before["USDT"][0] - spent
    assert after["BTC"][0] == before["BTC"][0] + D("0.01") - fee
    # A limit sell far above the book rests, locking the coins; cancel unlocks them.
    resting = adapter.place_order("BTCUSDT", "SELL", D("0.02"), price=best_ask * 2, time_in_force="GTC", client_id="t-rest")
    assert resting["status"] == "NEW" and adapter.balance_detail()["BTC"][1] == D("0.02")
    assert adapter.get_order("BTCUSDT", "t-rest")["status"] == "NEW"
    assert adapter.cancel_order("BTCUSDT", "t-rest")["status"] == "CANCELED"
    assert adapter.balance_detail()["BTC"][1] == D("0")


def test_binance_rules_are_applied_before_sending_and_errors_are_typed(venue_with_accounts):
    from trading.exchanges.errors import DuplicateClientOrderId, InsufficientFunds, InvalidOrder, OrderNotFound

    adapter = binance.BinanceAdapter(venue_with_accounts.server.binance_url, "bn-key", "bn-secret")
    # 0.000123456 BTC floors to the 0.00001 step; a buy price floors to the 0.01 tick.
    assert adapter.prepare("BTCUSDT", "BUY", D("0.000123456"), D("95000.019")) == (D("0.00012"), D("95000.01"))
    assert adapter.prepare("BTCUSDT", "SELL", D("0.0001"), D("95000.011"))[1] == D("95000.02")
    with pytest.raises(InvalidOrder, match="NOTIONAL"):
        adapter.prepare("BTCUSDT", "BUY", D("0.00001"), D("95000"))  # 0.95 USDT < 5
    with pytest.raises(InsufficientFunds):
        adapter.place_order("BTCUSDT", "BUY", D("10"), client_id="t-too-big")
    resting = D(requests.get(f"{venue_with_accounts.server.binance_url}/api/v3/depth", params={"symbol": "BTCUSDT"},
                             timeout=5).json()["asks"][0][0]) * 2
    adapter.place_order("BTCUSDT", "SELL", D("0.01"), price=resting, time_in_force="GTC", client_id="t-dup")
    with pytest.raises(DuplicateClientOrderId):  # Binance: rejected while the first is open
        adapter.place_order("BTCUSDT", "SELL", D("0.01"), price=resting, time_in_force="GTC", client_id="t-dup")
    with pytest.raises(OrderNotFound):
        adapter.get_order("BTCUSDT", "never-sent")


def test_a_timed_out_order_is_found_not_sent_twice(venue_with_accounts):
    adapter = binance.BinanceAdapter(venue_with_accounts.server.binance_url, "bn-key", "bn-secret", timeout=0.3)
    venue_with_accounts.call(venue_with_accounts.server.control, "binance", "rest_delay", seconds=0.8)
    before = adapter.balance_detail()["BTC"][0]
    venue_with_accounts.call(venue_with_accounts.server.control, "binance", "rest_delay", seconds=0.8)
    order = adapter.submit(LegOrder("BTC", "buy", D("0.01"), None, "t-timeout"))
    assert order.status == "done" and order.client_id == "t-timeout" and order.executed == D("0.01")
    assert order.fills and order.fee == D("0.00001") and order.fee_asset == "BTC"  # from myTrades
    venue_with_accounts.call(venue_with_accounts.server.control, "binance", "rest_delay", seconds=0)
    orders = [o for o in venue_with_accounts.server.binance.orders.orders.values() if o.client_id == "t-timeout"]
    assert len(orders) == 1  # exactly one order, despite the timeout
    assert adapter.balance_detail()["BTC"][0] == before + D("0.01") - D("0.00001")


def test_upbit_orders_of_every_type_against_the_book(venue_with_accounts):
    adapter = UpbitAdapter(venue_with_accounts.server.upbit_url, "up-access", UP_SECRET)
    book = requests.get(f"{venue_with_accounts.server.upbit_url}/v1/orderbook", params={"markets": "KRW-BTC"}, timeout=5).json()[0]
    best_ask = D(str(book["orderbook_units"][0]["ask_price"]))
    before = adapter.balance_detail()
    bought = adapter.place_order("KRW-BTC", "bid", "price", price=D("100000"), identifier="u-buy")  # spend 100,000 KRW
    assert bought["state"] in ("done", "cancel") and D(bought["executed_volume"]) > 0
    detail = adapter.get_order("u-buy")
    funds = sum(D(t["funds"]) for t in detail["trades"])
    assert D(detail["paid_fee"]) == funds * D("0.0005")
    after = adapter.balance_detail()
    assert after["KRW"][0] == before["KRW"][0] - funds - D(detail["paid_fee"])
    assert after["BTC"][0] == before["BTC"][0] + D(detail["executed_volume"])
    sold = adapter.place_order("KRW-BTC", "ask", "market", volume=D("0.001"), identifier="u-sell")
    assert D(sold["executed_volume"]) == D("0.001")
    # A limit bid below the book rests and locks KRW; cancelling answers with the order as accepted.
    resting = adapter.place_order("KRW-BTC", "bid", "limit", volume=D("0.001"), price=best_ask / 2, identifier="u-rest")
    assert resting["state"] == "wait" and adapter.balance_detail()["KRW"][1] > 0
    assert adapter.cancel_order("u-rest")["state"] == "wait"
    assert adapter.get_order("u-rest")["state"] == "cancel" and adapter.balance_detail()["KRW"][1] == 0


def test_upbit_identifier_is_taken_forever_and_rules_apply_before_sending(venue_with_accounts):
    from trading.exchanges.errors import DuplicateClientOrderId, InsufficientFunds, InvalidOrder, OrderNotFound

    adapter = UpbitAdapter(venue_with_accounts.server.upbit_url, "up-access", UP_SECRET)
    with pytest.raises(InsufficientFunds):
        adapter.place_order("KRW-BTC", "bid", "price", price=D("5000000"), identifier="u-once")
    with pytest.raises(DuplicateClientOrderId):  # even though the first attempt failed
        adapter.place_order("KRW-BTC", "bid", "price", price=D("10000"), identifier="u-once")
    assert adapter.prepare("KRW-BTC", "bid", D("0.0012345678"), D("131234567")) == (D("0.00123456"), D("131234000"))
    assert adapter.prepare("KRW-BTC", "ask", D("0.001"), D("131234001"))[1] == D("131235000")
    with pytest.raises(InvalidOrder, match="minimum"):
        adapter.prepare("KRW-BTC", "bid", D("0.00001"), D("131000000"))
    with pytest.raises(OrderNotFound):
        adapter.get_order("never-sent")


def test_upbit_timed_out_order_is_found_not_sent_twice(venue_with_accounts):
    adapter = UpbitAdapter(venue_with_accounts.server.upbit_url, "up-access", UP_SECRET, timeout=0.3)
    venue_with_accounts.call(venue_with_accounts.server.control, "upbit", "rest_delay", seconds=0.8)
    order = adapter.submit(LegOrder("BTC", "sell", D("0.001"), None, "u-timeout"))
    venue_with_accounts.call(venue_with_accounts.server.control, "upbit", "rest_delay", seconds=0)
    assert order.client_id == "u-timeout" and order.executed == D("0.001") and order.status == "done"
    assert order.fee == sum(f.fee for f in order.fills) and order.fee_asset == "KRW"
    orders = [o for o in venue_with_accounts.server.upbit.orders.orders.values() if o.client_id == "u-timeout"]
    assert len(orders) == 1


def test_a_rate_limited_order_is_retried_after_the_wait_and_placed_once(venue_with_accounts, monkeypatch):
    import trading.exchanges.base as base

    dialect = venue_with_accounts.server.binance
    adapter = binance.BinanceAdapter(venue_with_accounts.server.binance_url, "bn-key", "bn-secret")
    adapter.filters("BTCUSDT")
    dialect.weights.limit = dialect.weight_limit = dialect.weights.used("127.0.0.1")  # no weight left
    monkeypatch.setattr(dialect.weights, "seconds_left", lambda: 1.0)  # Retry-After: 1

    def wait(seconds):  # instead of sleeping: the window passes
        waits.append(seconds)
        dialect.weights.limit = dialect.weight_limit = 6000

    waits = []
    monkeypatch.setattr(base.time, "sleep", wait)
    order = adapter.submit(LegOrder("BTC", "buy", D("0.01"), None, "t-429"))
    assert order.status == "done" and order.executed == D("0.01") and waits == [1.0]
    assert len([o for o in dialect.orders.orders.values() if o.client_id == "t-429"]) == 1


def test_upbit_waits_for_the_next_second_when_its_budget_is_spent(venue_with_accounts, monkeypatch):
    import trading.exchanges.upbit as upbit_module

    adapter = UpbitAdapter(venue_with_accounts.server.upbit_url, "up-access", UP_SECRET)
    adapter.remaining_req["default"] = 0
    waits = []
    monkeypatch.setattr(upbit_module.time, "sleep", waits.append)
    adapter.accounts()
    assert len(waits) == 1 and 0 < waits[0] <= 1.0
