"""The venue's Binance dialect, over real sockets, against Binance's recorded and documented shapes."""

import time
from decimal import Decimal

import orjson
import requests
import websocket

from marketdata.rules import BinanceFilters
from marketdata.venue.market import MarketModel
from tests.exchange_fixtures import load


def combined(venue, *streams, micro=False):
    url = f"{venue.server.binance_ws_url}/stream?streams={'/'.join(streams)}"
    return websocket.create_connection(url + ("&timeUnit=MICROSECOND" if micro else ""), timeout=5)


def recv_json(ws):
    opcode, data = ws.recv_data()
    assert opcode == websocket.ABNF.OPCODE_TEXT
    return orjson.loads(data)


def test_diff_depth_stream_is_consistent_with_the_rest_snapshot(venue):
    ws = combined(venue, "btcusdt@depth@100ms")
    first = recv_json(ws)
    assert first["stream"] == "btcusdt@depth@100ms"
    assert set(load("binance_ws_depth_diff_docexample")) == set(first["data"])
    snapshot = requests.get(f"{venue.server.binance_url}/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 1000}, timeout=5).json()
    assert set(load("binance_rest_depth_btcusdt_recorded")) == set(snapshot)
    previous = first["data"]["u"]
    # The snapshot lands somewhere in the stream: some later event must straddle lastUpdateId + 1.
    straddled = snapshot["lastUpdateId"] < previous
    for _ in range(20):
        event = recv_json(ws)["data"]
        assert event["U"] == previous + 1, "update ids must be contiguous"
        straddled |= event["U"] <= snapshot["lastUpdateId"] + 1 <= event["u"]
        previous = event["u"]
    assert straddled
    ws.close()


def test_raw_streams_partial_depth_book_ticker_and_trades(venue):
    ws = websocket.create_connection(f"{venue.server.binance_ws_url}/ws/ethusdt@depth5@100ms", timeout=5)
    partial = recv_json(ws)
    assert set(partial) == set(load("binance_ws_depth_partial_docexample"))
    assert len(partial["bids"]) == 5
    ws.close()
    ws = combined(venue, "ethusdt@bookTicker", "ethusdt@trade")
    kinds = {}
    while len(kinds) < 2:
        msg = recv_json(ws)
        kinds[msg["stream"]] = msg["data"]
    assert set(load("binance_ws_bookticker_docexample")) == set(kinds["ethusdt@bookTicker"])
    assert set(load("binance_ws_trade_docexample")) <= set(kinds["ethusdt@trade"])
    ws.close()


def test_microsecond_time_unit(venue):
    ws = combined(venue, "btcusdt@depth@100ms", micro=True)
    event = recv_json(ws)["data"]
    assert abs(event["E"] / 1e6 - time.time()) < 5
    ws.close()


def test_live_subscribe_list_unsubscribe_and_errors(venue):
    ws = combined(venue, "btcusdt@trade")
    doc = load("binance_ws_subscribe_exchange_docexample")

    def ask(request):
        ws.send(orjson.dumps(request).decode())
        while True:
            msg = recv_json(ws)
            if "result" in msg or "code" in msg:
                return msg

    assert ask({"method": "SUBSCRIBE", "params": ["ethusdt@depth@100ms"], "id": 1}) == doc["subscribe_response"]
    time.sleep(0.25)  # the venue meters 5 incoming messages per second, as Binance does
    assert ask({"method": "LIST_SUBSCRIPTIONS", "id": 3})["result"] == ["btcusdt@trade", "ethusdt@depth@100ms"]
    time.sleep(0.25)
    assert ask({"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 312}) == doc["unsubscribe_response"]
    time.sleep(0.25)
    assert ask({"method": "SET_PROPERTY", "params": ["nope", True], "id": 5}) == doc["error_examples"][0]
    time.sleep(0.25)
    assert ask({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": -1})["code"] == 2
    time.sleep(0.25)
    ws.send("{not json")
    while "code" not in (msg := recv_json(ws)):
        pass
    assert msg["code"] == 3
    ws.close()


def test_more_than_five_messages_a_second_disconnects(venue):
    ws = combined(venue, "btcusdt@trade")
    # 12 at once: however a one-second window boundary splits them, one side holds more than five.
    for i in range(12):
        try:
            ws.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}).decode())
        except (websocket.WebSocketException, OSError):
            break
    deadline = time.time() + 5
    closed = False
    while time.time() < deadline:
        try:
            if ws.recv() in ("", b""):
                closed = True
                break
        except (websocket.WebSocketException, OSError):
            closed = True
            break
    assert closed


def test_any_path_segment_connects_and_streams_nothing_until_subscribed(venue):
    """Binance opens /ws/<anything> (ccxt pro connects to /ws/0; an upper-case or unknown symbol is
    a classic silent mistake): nothing is streamed until a SUBSCRIBE names a real stream."""
    for name in ("0", "nopeusdt@depth", "BTCUSDT@trade"):
        ws = websocket.create_connection(f"{venue.server.binance_ws_url}/ws/{name}", timeout=5)
        ws.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
        assert recv_json(ws) == {"result": [], "id": 1}, name
        ws.send(orjson.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 2}))
        assert recv_json(ws) == {"result": None, "id": 2}
        assert recv_json(ws)["e"] == "depthUpdate"
        ws.close()


def test_server_shutdown_event_in_combined_wrapper(venue):
    ws = combined(venue, "btcusdt@trade")
    time.sleep(0.1)
    venue.call(venue.server.control, "binance", "server_shutdown")
    while True:
        msg = recv_json(ws)
        if msg["stream"] == "!serverShutdown":
            assert msg["data"]["e"] == "serverShutdown"
            break
    ws.close()


def test_exchange_info_has_the_documented_symbol_fields_and_filters(venue):
    info = requests.get(f"{venue.server.binance_url}/api/v3/exchangeInfo", timeout=5).json()
    doc = load("binance_rest_exchangeinfo_docexample")
    assert set(doc) == set(info)
    assert set(doc["symbols"][0]) == set(info["symbols"][0])
    filters = {f["filterType"] for f in info["symbols"][0]["filters"]}
    assert {"PRICE_FILTER", "LOT_SIZE", "NOTIONAL"} <= filters
    one = requests.get(f"{venue.server.binance_url}/api/v3/exchangeInfo", params={"symbol": "ETHUSDT"}, timeout=5).json()
    assert [s["symbol"] for s in one["symbols"]] == ["ETHUSDT"]


def test_books_follow_price_filter_and_lot_size(venue):
    info = requests.get(f"{venue.server.binance_url}/api/v3/exchangeInfo", timeout=5).json()
    for symbol in info["symbols"]:
        filters = BinanceFilters.from_exchange_info(symbol["filters"])
        depth = requests.get(f"{venue.server.binance_url}/api/v3/depth", params={"symbol": symbol["symbol"]}, timeout=5).json()
        for price, qty in depth["bids"] + depth["asks"]:
            assert filters.price_error(Decimal(price)) is None, (symbol["symbol"], price)
            assert filters.quantity_error(Decimal(qty)) is None, (symbol["symbol"], qty)


def test_rest_errors_use_binance_codes(venue):
    base = venue.server.binance_url
    bad = requests.get(f"{base}/api/v3/depth", params={"symbol": "NOPEUSDT"}, timeout=5)
    assert bad.status_code == 400 and bad.json() == load("binance_errors_examples")[0]["body"]
    missing = requests.get(f"{base}/api/v3/depth", timeout=5)
    assert missing.json()["code"] == -1102
    illegal = requests.get(f"{base}/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "x"}, timeout=5)
    assert illegal.json()["code"] == -1100
    ticker = requests.get(f"{base}/api/v3/ticker/bookTicker", params={"symbol": "BTCUSDT"}, timeout=5).json()
    assert set(load("binance_rest_bookticker_btcusdt_recorded")) == set(ticker)
    assert abs(requests.get(f"{base}/api/v3/time", timeout=5).json()["serverTime"] / 1000 - time.time()) < 5


def test_request_weight_is_metered_and_429_carries_retry_after(venue):
    base = venue.server.binance_url
    venue.server.binance.weights.limit = venue.server.binance.weight_limit = 30
    r = requests.get(f"{base}/api/v3/depth", params={"symbol": "BTCUSDT"}, timeout=5)
    assert r.headers["X-MBX-USED-WEIGHT-1M"] == "5"
    for _ in range(30):  # fixed one-minute windows: keep going until the limit bites
        r = requests.get(f"{base}/api/v3/depth", params={"symbol": "BTCUSDT"}, timeout=5)
        if r.status_code == 429:
            break
    assert r.status_code == 429
    assert r.json()["code"] == -1003 and int(r.headers["Retry-After"]) >= 1


def test_server_pings_and_drops_clients_that_never_pong(venue):
    venue.server.venue.ping_interval = 0.2
    venue.server.binance.pong_timeout = 0.5
    silent = websocket.create_connection(f"{venue.server.binance_ws_url}/ws/btcusdt@trade", timeout=5)
    # Reading raw frames does not answer pings (recv() would), so the venue gives up on this client.
    pings = 0
    try:
        while True:
            frame = silent.recv_frame()
            if frame.opcode == websocket.ABNF.OPCODE_PING:
                pings += 1
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                break
    except (websocket.WebSocketException, OSError):
        pass
    assert pings >= 1


def test_same_seed_gives_the_same_market():
    a, b = MarketModel(seed=3), MarketModel(seed=3)
    for _ in range(20):
        a.step(0.1)
        b.step(0.1)
    assert a.coins["BTC"].binance_bids == b.coins["BTC"].binance_bids
    assert a.coins["ETH"].upbit_asks == b.coins["ETH"].upbit_asks
    assert MarketModel(seed=4).coins["BTC"].binance_bids != a.coins["BTC"].binance_bids


def test_forced_premium_shows_in_the_books():
    model = MarketModel(seed=5)
    model.force_premium("SOL", 0.03)
    model.step(0.1)
    upbit_mid = (model.coins["SOL"].upbit_bids[0][0] + model.coins["SOL"].upbit_asks[0][0]) / 2
    binance_mid = (model.coins["SOL"].binance_bids[0][0] + model.coins["SOL"].binance_asks[0][0]) / 2
    usdt_mid = (model.usdt_bids[0][0] + model.usdt_asks[0][0]) / 2
    premium = upbit_mid / (binance_mid * usdt_mid) - 1
    assert abs(premium - Decimal("0.03")) < Decimal("0.002")
