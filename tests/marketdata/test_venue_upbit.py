"""The venue's Upbit dialect, over real sockets, against Upbit's recorded and documented shapes."""

from decimal import Decimal

import orjson
import requests
import websocket

from marketdata.rules import upbit_krw_tick
from tests.exchange_fixtures import load


def connect(venue):
    return websocket.create_connection(venue.server.upbit_ws_url, timeout=5)


def subscribe(ws, *types, fmt="DEFAULT"):
    ws.send(orjson.dumps([{"ticket": "test"}, *types, {"format": fmt}]).decode())


def recv_frame(ws):
    opcode, data = ws.recv_data()
    return opcode, orjson.loads(data)


def test_orderbook_stream_sends_binary_frames_shaped_like_upbit(venue):
    ws = connect(venue)
    subscribe(ws, {"type": "orderbook", "codes": ["KRW-BTC"]})
    opcode, snapshot = recv_frame(ws)
    assert opcode == websocket.ABNF.OPCODE_BINARY
    fixture = load("upbit_ws_orderbook_default_krweth")
    assert set(fixture) <= set(snapshot)
    assert set(fixture["orderbook_units"][0]) == set(snapshot["orderbook_units"][0])
    assert snapshot["stream_type"] == "SNAPSHOT" and snapshot["code"] == "KRW-BTC"
    assert len(snapshot["orderbook_units"]) == 30
    _, update = recv_frame(ws)
    assert update["stream_type"] == "REALTIME"
    ws.close()


def test_simple_format_uses_the_documented_abbreviations(venue):
    ws = connect(venue)
    subscribe(ws, {"type": "orderbook", "codes": ["KRW-ETH.5"]}, fmt="SIMPLE")
    _, msg = recv_frame(ws)
    fixture = load("upbit_ws_orderbook_simple_list_docexample")[0]
    assert set(fixture) <= set(msg)
    assert set(fixture["obu"][0]) == set(msg["obu"][0])
    assert len(msg["obu"]) == 5
    ws.close()


def test_snapshot_and_realtime_only_flags(venue):
    ws = connect(venue)
    subscribe(ws, {"type": "orderbook", "codes": ["KRW-XRP"], "is_only_snapshot": True})
    _, msg = recv_frame(ws)
    assert msg["stream_type"] == "SNAPSHOT"
    ws.settimeout(0.5)
    try:
        ws.recv()
        raise AssertionError("a snapshot-only subscription kept streaming")
    except websocket.WebSocketTimeoutException:
        pass
    ws.settimeout(5)
    subscribe(ws, {"type": "orderbook", "codes": ["KRW-XRP"], "is_only_realtime": True})
    _, msg = recv_frame(ws)
    assert msg["stream_type"] == "REALTIME"
    ws.close()


def test_ticker_and_trade_streams_carry_upbit_fields(venue):
    ws = connect(venue)
    subscribe(ws, {"type": "ticker", "codes": ["KRW-BTC"]}, {"type": "trade", "codes": ["KRW-BTC"]})
    seen = {}
    while len(seen) < 2:
        _, msg = recv_frame(ws)
        seen[msg["type"]] = msg
    assert set(load("upbit_ws_ticker_default_docexample")) <= set(seen["ticker"])
    assert set(load("upbit_ws_trade_default_snapshot")) <= set(seen["trade"])
    ws.close()


def test_text_ping_gets_status_up(venue):
    ws = connect(venue)
    ws.send("PING")
    assert recv_frame(ws)[1] == {"status": "UP"}
    ws.close()


def test_bad_requests_get_upbit_error_names(venue):
    cases = {
        "not json": "WRONG_FORMAT",
        '[{"type":"orderbook","codes":["KRW-BTC"]}]': "NO_TICKET",
        '[{"ticket":"x"}]': "NO_TYPE",
        '[{"ticket":"x"},{"type":"orderbook"}]': "NO_CODES",
        '[{"ticket":"x"},{"type":"candle.7s","codes":["KRW-BTC"]}]': "INVALID_PARAM",
    }
    ws = connect(venue)
    for request, name in cases.items():
        ws.send(request)
        msg = recv_frame(ws)[1]
        assert msg["error"]["name"] == name and msg["error"]["message"]
    ws.close()


def test_rest_quotation_endpoints_match_recorded_shapes(venue):
    base = venue.server.upbit_url
    markets = requests.get(f"{base}/v1/market/all", params={"is_details": "true"}, timeout=5).json()
    fixture = load("upbit_rest_market_all_details")[0]
    assert set(fixture) == set(markets[0])
    assert set(fixture["market_event"]["caution"]) == set(markets[0]["market_event"]["caution"])
    codes = {m["market"] for m in markets}
    assert "KRW-USDT" in codes and len(codes) >= 9

    book = requests.get(f"{base}/v1/orderbook", params={"markets": "KRW-BTC,KRW-ETH", "count": 15}, timeout=5).json()
    recorded = load("upbit_rest_orderbook_krwbtc_level10000_recorded")[0]
    assert set(recorded) == set(book[0])
    assert len(book[0]["orderbook_units"]) == 15 and len(book) == 2

    ticker = requests.get(f"{base}/v1/ticker", params={"markets": "KRW-BTC"}, timeout=5).json()
    assert set(load("upbit_rest_ticker_krwbtc_krweth")[0]) <= set(ticker[0])

    instruments = requests.get(f"{base}/v1/orderbook/instruments", params={"markets": "KRW-BTC,KRW-USDT"}, timeout=5).json()
    assert set(load("upbit_rest_orderbook_instruments")[0]) == set(instruments[0])
    assert instruments[1]["tick_size"] == "0.5"


def test_rest_errors_use_upbit_quotation_bodies(venue):
    base = venue.server.upbit_url
    missing = requests.get(f"{base}/v1/orderbook", timeout=5)
    assert missing.status_code == 400
    quotation = next(e for e in load("upbit_errors_examples") if e["api"] == "quotation")
    assert missing.json() == quotation["body"]
    unknown = requests.get(f"{base}/v1/ticker", params={"markets": "KRW-NOPE"}, timeout=5)
    assert unknown.status_code == 404 and unknown.json()["error"]["name"] == 404


def test_rate_limit_answers_429_with_remaining_req_header(venue):
    base = venue.server.upbit_url
    statuses = []
    # The limit is 10 a second in fixed windows: a burst of up to 60 must cross it in some window.
    for _ in range(60):
        r = requests.get(f"{base}/v1/ticker", params={"markets": "KRW-BTC"}, timeout=5)
        statuses.append(r.status_code)
        assert r.headers["Remaining-Req"].startswith("group=ticker; min=")
        if r.status_code == 429:
            break
    assert statuses[0] == 200 and statuses[-1] == 429


def test_books_follow_upbit_tick_rules(venue):
    book = requests.get(f"{venue.server.upbit_url}/v1/orderbook", params={"markets": "KRW-BTC,KRW-DOGE,KRW-USDT"}, timeout=5).json()
    for market in book:
        for unit in market["orderbook_units"]:
            for key in ("ask_price", "bid_price"):
                price = Decimal(str(unit[key]))
                assert price % upbit_krw_tick(price, market["market"]) == 0, (market["market"], price)


def test_serves_a_usd_krw_reference_in_the_forex_api_shape(venue):
    quote = requests.get(f"{venue.server.upbit_url}/v1/forex/recent", params={"codes": "FRX.KRWUSD"}, timeout=5).json()[0]
    assert quote["code"] == "FRX.KRWUSD" and 1000 < quote["basePrice"] < 2000
    assert requests.get(f"{venue.server.upbit_url}/v1/forex/recent", params={"codes": "X"}, timeout=5).status_code == 404
