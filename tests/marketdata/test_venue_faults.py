"""The venue's per-endpoint fault rules, clock offset and Binance myTrades, over real HTTP.

Every fault kind on both dialects: what the client saw (a status, an HTML page, a timeout, a reset
connection) and whether the order took effect (looked up afterwards, and the balances on the venue).
"""

import time
import uuid
from decimal import Decimal as D
from urllib.parse import urlencode

import pytest
import requests

from marketdata.venue.accounts import Accounts
from marketdata.venue.core import Venue
from marketdata.venue.market import MarketModel
from marketdata.venue.server import VenueServer, VenueThread
from tests.exchange_fixtures import load
from trading.exchanges.binance import BinanceAdapter, sign
from trading.exchanges.errors import OrderNotFound, RateLimited, UnknownOutcome
from trading.exchanges.upbit import UpbitAdapter, token

SECRET = "f" * 64
KEY = "fault-key"
FAST = 0.3  # client timeout (s)
HOLD = 0.6  # how long a timeout/delay fault holds the request (s)


@pytest.fixture(scope="module")
def venue():
    accounts = Accounts()
    accounts.add("binance", KEY, SECRET, {"USDT": "100000000", "BTC": "100"})
    accounts.add("binance", "other-key", SECRET, {"USDT": "100000000", "BTC": "100"})
    accounts.add("upbit", KEY, SECRET, {"KRW": "100000000000", "BTC": "100"})
    thread = VenueThread(VenueServer(Venue(MarketModel(seed=7)), accounts=accounts)).start()
    thread.call(thread.server.control, None, "pause")  # books hold still
    yield thread
    thread.stop()


@pytest.fixture(autouse=True)
def clean(venue):
    venue.call(venue.server.control, None, "clear")
    yield
    venue.call(venue.server.control, None, "clear")


def control(venue, exchange, **body):
    url = venue.server.binance_url if exchange == "binance" else venue.server.upbit_url
    response = requests.post(f"{url}/_venue/control", json=body, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def fault(venue, exchange, kind, method, path, **params):
    return control(venue, exchange, action="fault", kind=kind, method=method, path=path, **params)


def state(venue):
    return requests.get(f"{venue.server.binance_url}/_venue/state", timeout=5).json()


# --- plain signed requests ------------------------------------------------------------------------
def binance(venue, method, path, params, key=KEY, timeout=FAST, timestamp=None):
    query = dict(params, recvWindow=5000, timestamp=timestamp or int(time.time() * 1000))
    encoded = urlencode(query)
    url = f"{venue.server.binance_url}{path}?{encoded}&signature={sign(SECRET, encoded)}"
    return requests.request(method, url, headers={"X-MBX-APIKEY": key}, timeout=timeout)


def upbit(venue, method, path, params=None, body=None, timeout=FAST):
    headers = {"Authorization": f"Bearer {token(KEY, SECRET, body if body is not None else params)}"}
    url = f"{venue.server.upbit_url}{path}"
    if body is not None:
        return requests.request(method, url, json=body, headers=headers, timeout=timeout)
    return requests.request(method, url, params=params, headers=headers, timeout=timeout)


def binance_buy(venue, client_id, quantity="0.01", timeout=FAST):
    return binance(venue, "POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                    "quantity": quantity, "newClientOrderId": client_id,
                                                    "newOrderRespType": "FULL"}, timeout=timeout)


def upbit_buy(venue, identifier, timeout=FAST):
    return upbit(venue, "POST", "/v1/orders", body={"market": "KRW-BTC", "side": "bid", "price": "100000",
                                                   "ord_type": "price", "identifier": identifier}, timeout=timeout)


def place(venue, exchange, client_id, timeout=FAST):
    return (binance_buy if exchange == "binance" else upbit_buy)(venue, client_id, timeout=timeout)


def landed(venue, exchange, client_id) -> bool:
    """Ask the venue over HTTP whether the order exists."""
    if exchange == "binance":
        response = binance(venue, "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": client_id}, timeout=5)
        assert response.status_code in (200, 400), response.text
        return response.status_code == 200
    response = upbit(venue, "GET", "/v1/order", {"identifier": client_id}, timeout=5)
    assert response.status_code in (200, 404), response.text
    return response.status_code == 200


def btc(venue, exchange) -> D:
    accounts = venue.server.accounts.binance if exchange == "binance" else venue.server.accounts.upbit
    return venue.call(lambda: accounts[KEY].balances["BTC"])


def outcome(venue, exchange, client_id):
    """What the client saw: a status and content type, or the exception class it got."""
    try:
        response = place(venue, exchange, client_id)
    except requests.Timeout:
        return "timeout"
    except requests.ConnectionError:
        return "connection error"
    return response


# --- every kind on both dialects ---------------------------------------------------------------
ORDER_PATH = {"binance": "/api/v3/order", "upbit": "/v1/orders"}

CASES = [
    # kind, params, what the client sees, whether the order took effect
    ("refuse_429", {}, 429, False),
    ("refuse_418", {"retry_after": 7}, 418, False),
    ("unavailable_before", {}, 503, False),
    ("timeout_before", {"seconds": HOLD}, "timeout", False),
    ("reset_before", {}, "connection error", False),
    ("delay_after", {"seconds": HOLD}, "timeout", True),
    ("error_5xx_after", {}, 500, True),
    ("html_after", {}, "html", True),
    ("reset_after", {}, "connection error", True),
]


@pytest.mark.parametrize("exchange", ["binance", "upbit"])
@pytest.mark.parametrize(("kind", "params", "seen", "effect"), CASES, ids=[c[0] for c in CASES])
def test_each_fault_kind_on_order_entry(venue, exchange, kind, params, seen, effect):
    fault(venue, exchange, kind, "POST", ORDER_PATH[exchange], **params)
    client_id = f"f{uuid.uuid4().hex[:20]}"
    before = btc(venue, exchange)
    got = outcome(venue, exchange, client_id)
    if isinstance(seen, str) and seen != "html":
        assert got == seen
    elif seen == "html":
        assert got.status_code == 200 and got.headers["Content-Type"].startswith("text/html")
        assert got.text == "<html><body>502 Bad Gateway</body></html>"
    else:
        assert not isinstance(got, str) and got.status_code == seen, got
        check_error_body(exchange, kind, got)
    if kind == "timeout_before":
        time.sleep(HOLD + 0.2)  # the held request is dropped, never processed, even later
    assert landed(venue, exchange, client_id) is effect
    assert (btc(venue, exchange) > before) is effect
    assert state(venue)["fault_rules"] == []  # count 1: used up
    # The next identical request is served normally.
    again = f"g{uuid.uuid4().hex[:20]}"
    assert place(venue, exchange, again, timeout=5).status_code in (200, 201)
    assert landed(venue, exchange, again)


def check_error_body(exchange, kind, response):
    body = response.json() if response.headers["Content-Type"].startswith("application/json") else None
    if exchange == "binance":
        expected = {"refuse_429": -1003, "refuse_418": -1003, "unavailable_before": -1008, "error_5xx_after": -1000}
        assert body["code"] == expected[kind]
        if kind == "error_5xx_after":
            assert body["msg"] == "An unknown error occurred while processing the request."
        if kind == "refuse_429":
            assert body["msg"].startswith("Too much request weight used; current limit is 6000 request weight per 1 MINUTE.")
            assert response.headers["Retry-After"] == "1"
            assert "X-MBX-USED-WEIGHT-1M" in response.headers
        if kind == "refuse_418":
            assert body["msg"].startswith("Way too much request weight used; IP banned until ")
            assert response.headers["Retry-After"] == "7"
        return
    if kind in ("refuse_429", "refuse_418"):
        assert body["error"]["name"] == "too_many_requests"
        assert response.headers["Remaining-Req"] == "group=order; min=0; sec=0"
    elif kind == "unavailable_before":
        assert body is None and "503" in response.text  # a gateway's page, not Upbit's JSON
    else:
        assert body == {"error": {"name": "server_error", "message": "Internal server error."}}


def test_delay_after_answers_late_when_the_client_waits(venue):
    fault(venue, "upbit", "delay_after", "POST", "/v1/orders", seconds=0.3)
    started = time.monotonic()
    response = upbit_buy(venue, "late1", timeout=5)
    assert response.status_code == 201 and time.monotonic() - started >= 0.3
    assert response.json()["identifier"] == "late1"


def test_gateway_5xx_is_html(venue):
    fault(venue, "binance", "error_5xx_after", "POST", "/api/v3/order", status=504)
    response = binance_buy(venue, "gw1")
    assert response.status_code == 504 and response.headers["Content-Type"].startswith("text/html")
    assert landed(venue, "binance", "gw1")


def test_cancel_that_resets_after_taking_effect(venue):
    client_id = "rest1"
    rested = binance(venue, "POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                                      "timeInForce": "GTC", "quantity": "0.01", "price": "1000",
                                                      "newClientOrderId": client_id}, timeout=5)
    assert rested.status_code == 200 and rested.json()["status"] == "NEW"
    fault(venue, "binance", "reset_after", "DELETE", "/api/v3/order")
    with pytest.raises(requests.ConnectionError):
        binance(venue, "DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": client_id})
    query = binance(venue, "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": client_id}, timeout=5)
    assert query.json()["status"] == "CANCELED"


# --- matching, counting, clearing ------------------------------------------------------------------
def test_count_expires_after_n_requests(venue):
    fault(venue, "binance", "refuse_429", "GET", "/api/v3/time", count=2)
    url = f"{venue.server.binance_url}/api/v3/time"
    assert [requests.get(url, timeout=5).status_code for _ in range(3)] == [429, 429, 200]
    assert state(venue)["fault_rules"] == []


def test_count_zero_lasts_until_cleared(venue):
    fault(venue, "upbit", "unavailable_before", "GET", "/v1/accounts", count=0)
    for _ in range(4):
        assert upbit(venue, "GET", "/v1/accounts").status_code == 503
    rules = state(venue)["fault_rules"]
    assert len(rules) == 1 and rules[0]["remaining"] is None and rules[0]["hits"] == 4
    assert control(venue, "upbit", action="clear_faults") == {"ok": True, "dropped": 1}
    assert upbit(venue, "GET", "/v1/accounts").status_code == 200


def test_clear_drops_rules_too(venue):
    fault(venue, "binance", "refuse_418", "*", "*", count=0)
    assert requests.get(f"{venue.server.binance_url}/api/v3/ping", timeout=5).status_code == 418
    control(venue, "binance", action="clear")
    assert requests.get(f"{venue.server.binance_url}/api/v3/ping", timeout=5).status_code == 200


def test_rules_match_dialect_method_and_path(venue):
    # Set through the Binance port: the rule belongs to the Binance dialect unless told otherwise.
    rule = fault(venue, "binance", "refuse_429", "GET", "*", count=0)["rule"]
    assert rule["exchange"] == "binance"
    assert requests.get(f"{venue.server.upbit_url}/v1/market/all", timeout=5).status_code == 200
    assert requests.get(f"{venue.server.binance_url}/api/v3/ping", timeout=5).status_code == 429
    assert binance_buy(venue, "m1", timeout=5).status_code == 200  # POST is not GET
    # The control API itself is never faulted.
    assert state(venue)["fault_rules"][0]["hits"] == 1
    control(venue, "binance", action="clear_faults")
    fault(venue, "upbit", "refuse_429", "DELETE", "/v1/order")
    assert upbit(venue, "GET", "/v1/order", {"identifier": "nope"}).status_code == 404  # GET untouched
    assert upbit(venue, "DELETE", "/v1/order", {"identifier": "nope"}).status_code == 429
    # A path ending in * is a prefix; an Upbit quotation path answers in the quotation shape.
    fault(venue, "upbit", "refuse_429", "GET", "/v1/orderbook*")
    refused = requests.get(f"{venue.server.upbit_url}/v1/orderbook/instruments", params={"markets": "KRW-BTC"}, timeout=5)
    assert refused.status_code == 429 and refused.json()["error"]["name"] == 429
    assert refused.headers["Remaining-Req"] == "group=orderbook; min=0; sec=0"


def test_first_matching_rule_wins_then_the_next(venue):
    fault(venue, "binance", "refuse_429", "GET", "/api/v3/account")
    fault(venue, "binance", "error_5xx_after", "GET", "/api/v3/account")
    statuses = [binance(venue, "GET", "/api/v3/account", {}).status_code for _ in range(3)]
    assert statuses == [429, 500, 200]


def test_bad_rules_are_refused(venue):
    url = f"{venue.server.binance_url}/_venue/control"
    for body in ({"action": "fault", "kind": "explode"}, {"action": "fault", "kind": "refuse_429", "method": "PATCH"},
                 {"action": "fault", "kind": "refuse_429", "exchange": "kraken"},
                 {"action": "fault", "kind": "error_5xx_after", "status": 501}):
        assert requests.post(url, json=body, timeout=5).status_code == 400


def test_rest_delay_still_works(venue):
    venue.call(venue.server.control, "binance", "rest_delay", seconds=HOLD)
    with pytest.raises(requests.Timeout):
        binance_buy(venue, "rd1")
    assert landed(venue, "binance", "rd1")


# --- the project's adapters against faults -----------------------------------------------------
def test_binance_adapter_sees_an_unknown_outcome_and_finds_the_order(venue):
    adapter = BinanceAdapter(venue.server.binance_url, KEY, SECRET, timeout=FAST)
    fault(venue, "binance", "reset_after", "POST", "/api/v3/order")
    with pytest.raises(UnknownOutcome):
        adapter.place_order("BTCUSDT", "BUY", D("0.01"), client_id="ad1")
    assert adapter.get_order("BTCUSDT", "ad1")["status"] == "FILLED"  # it took effect


def test_binance_adapter_sees_a_refusal_as_rate_limited_and_nothing_happened(venue):
    adapter = BinanceAdapter(venue.server.binance_url, KEY, SECRET, timeout=FAST)
    fault(venue, "binance", "refuse_429", "POST", "/api/v3/order", retry_after=3)
    with pytest.raises(RateLimited) as info:
        adapter.place_order("BTCUSDT", "BUY", D("0.01"), client_id="ad2")
    assert info.value.retry_after == 3 and info.value.code == -1003
    with pytest.raises(OrderNotFound):
        adapter.get_order("BTCUSDT", "ad2")


def test_upbit_adapter_sees_a_refusal_as_rate_limited(venue):
    adapter = UpbitAdapter(venue.server.upbit_url, KEY, SECRET, timeout=FAST)
    fault(venue, "upbit", "refuse_418", "GET", "/v1/accounts")
    with pytest.raises(RateLimited) as info:
        adapter.accounts()
    assert info.value.status == 418


# --- clock offset ------------------------------------------------------------------------------------
def test_clock_offset_gives_1021_until_the_client_syncs(venue):
    adapter = BinanceAdapter(venue.server.binance_url, KEY, SECRET, timeout=5)
    assert adapter.account()["accountType"] == "SPOT"
    control(venue, "binance", action="clock_offset", ms=10_000)  # the venue runs 10 s ahead
    server = requests.get(f"{venue.server.binance_url}/api/v3/time", timeout=5).json()["serverTime"]
    assert 9_000 < server - time.time() * 1000 < 11_000
    late = binance(venue, "GET", "/api/v3/account", {})
    assert late.status_code == 400
    assert late.json() == {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
    assert 9_000 < adapter.sync_clock() < 11_000
    assert adapter.account()["accountType"] == "SPOT"

    control(venue, "binance", action="clock_offset", ms=-3_000)  # now 3 s behind: the client is ahead
    early = binance(venue, "POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                     "quantity": "0.01", "newClientOrderId": "ck1"})
    assert early.json() == {"code": -1021, "msg": "Timestamp for this request was 1000ms ahead of the server's time."}
    control(venue, "binance", action="clock_offset", ms=0)
    assert not landed(venue, "binance", "ck1")


def test_upbit_ignores_the_clock_offset(venue):
    # Upbit's JWT carries no timestamp (docs/venue.md): only nonce reuse is refused.
    control(venue, "upbit", action="clock_offset", ms=60_000)
    assert upbit(venue, "GET", "/v1/accounts").status_code == 200
    headers = {"Authorization": f"Bearer {token(KEY, SECRET, nonce='same-nonce')}"}
    url = f"{venue.server.upbit_url}/v1/accounts"
    assert requests.get(url, headers=headers, timeout=5).status_code == 200
    again = requests.get(url, headers=headers, timeout=5)
    assert again.status_code == 401 and again.json()["error"]["name"] == "nonce_used"


# --- myTrades -------------------------------------------------------------------------------------------
def test_my_trades_are_the_fills_of_the_full_response(venue):
    ask = requests.get(f"{venue.server.binance_url}/api/v3/ticker/bookTicker", params={"symbol": "BTCUSDT"}, timeout=5).json()
    quantity = D(ask["askQty"]) + D("0.001")  # more than the top level: at least two fills
    buy = binance_buy(venue, "mt-buy", quantity=f"{quantity:f}", timeout=5).json()
    sell = binance(venue, "POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET",
                                                    "quantity": "0.02", "newClientOrderId": "mt-sell"}, timeout=5).json()
    assert len(buy["fills"]) >= 2 and sell["fills"]

    response = binance(venue, "GET", "/api/v3/myTrades", {"symbol": "BTCUSDT", "orderId": buy["orderId"]}, timeout=5)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    trades = response.json()
    assert set(trades[0]) == set(load("binance_rest_mytrades_ltcusdt_recorded_ccxt")[0])
    assert [(t["id"], t["price"], t["qty"], t["commission"], t["commissionAsset"]) for t in trades] == \
        [(f["tradeId"], f["price"], f["qty"], f["commission"], f["commissionAsset"]) for f in buy["fills"]]
    for t in trades:
        assert t["symbol"] == "BTCUSDT" and t["orderId"] == buy["orderId"] and t["orderListId"] == -1
        assert D(t["quoteQty"]) == D(t["price"]) * D(t["qty"]) and t["isBuyer"] is True and t["isMaker"] is False
        assert t["time"] == buy["transactTime"] and isinstance(t["id"], int)
    assert sum(D(t["qty"]) for t in trades) == D(buy["executedQty"])

    everything = binance(venue, "GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"}, timeout=5).json()
    ids = [t["id"] for t in everything]
    assert ids == sorted(ids) and ids[-len(sell["fills"]):] == [f["tradeId"] for f in sell["fills"]]
    seller = [t for t in everything if t["orderId"] == sell["orderId"]]
    assert all(t["isBuyer"] is False and t["commissionAsset"] == "USDT" for t in seller)
    # fromId: from that trade on; limit: the most recent ones without fromId, the first ones with it.
    first = trades[1]["id"]
    from_id = binance(venue, "GET", "/api/v3/myTrades", {"symbol": "BTCUSDT", "fromId": first, "limit": 1}, timeout=5).json()
    assert [t["id"] for t in from_id] == [first]
    latest = binance(venue, "GET", "/api/v3/myTrades", {"symbol": "BTCUSDT", "limit": 1}, timeout=5).json()
    assert [t["id"] for t in latest] == [ids[-1]]
    window = binance(venue, "GET", "/api/v3/myTrades", {"symbol": "BTCUSDT", "startTime": buy["transactTime"],
                                                         "endTime": sell["transactTime"]}, timeout=5).json()
    assert {t["orderId"] for t in window} == {buy["orderId"], sell["orderId"]}
    # Another account sees none of them.
    assert binance(venue, "GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"}, key="other-key", timeout=5).json() == []


def test_my_trades_errors(venue):
    def error(params):
        response = binance(venue, "GET", "/api/v3/myTrades", params, timeout=5)
        assert response.status_code == 400
        return response.json()

    assert error({}) == {"code": -1102, "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."}
    assert error({"symbol": "NOPEUSDT"}) == {"code": -1121, "msg": "Invalid symbol."}
    assert error({"symbol": "BTCUSDT", "orderId": "1", "startTime": "1"})["code"] == -1128
    assert error({"symbol": "BTCUSDT", "startTime": "0", "endTime": str(25 * 3600 * 1000)})["code"] == -1127
    assert error({"symbol": "BTCUSDT", "limit": "x"})["code"] == -1100
    unsigned = requests.get(f"{venue.server.binance_url}/api/v3/myTrades", params={"symbol": "BTCUSDT"},
                            headers={"X-MBX-APIKEY": KEY}, timeout=5)
    assert unsigned.json()["code"] == -1102  # signature missing
    charged = binance(venue, "GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"}, timeout=5)
    before = int(charged.headers["X-MBX-USED-WEIGHT-1M"])
    after = int(binance(venue, "GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"}, timeout=5).headers["X-MBX-USED-WEIGHT-1M"])
    assert after - before == 20


def test_after_kinds_pass_an_unknown_paths_404_through(venue):
    fault(venue, "binance", "delay_after", "GET", "/api/v3/nope", seconds=0.05)
    assert requests.get(f"{venue.server.binance_url}/api/v3/nope", timeout=5).status_code == 404
