from decimal import Decimal

import orjson
import pytest

from marketdata.exceptions import FeedMessageError
from marketdata.parsers import (
    BookSnapshot,
    ControlMessage,
    DepthDiff,
    parse_binance_depth_snapshot,
    parse_binance_message,
    parse_upbit_message,
)
from tests.exchange_fixtures import load, raw


def test_parses_upbit_default_orderbook_fixture_as_binary_frame():
    [book] = parse_upbit_message(raw("upbit_ws_orderbook_default_krweth"))
    assert isinstance(book, BookSnapshot)
    assert book.market == "KRW-ETH"
    assert book.asks[0] == (Decimal("137002000"), Decimal("0.10623869"))
    assert book.bids[0] == (Decimal("137001000"), Decimal("0.03656812"))
    assert [p for p, _ in book.bids] == sorted((p for p, _ in book.bids), reverse=True)
    assert book.timestamp.year == 2025


def test_parses_upbit_simple_list_fixture_and_text_frames():
    [book] = parse_upbit_message(raw("upbit_ws_orderbook_simple_list_docexample").decode())
    assert book.market == "KRW-BTC"
    assert book.asks[2] == (Decimal("148900000"), Decimal("0.70085443"))
    assert len(book.bids) == 3


def test_upbit_status_and_error_messages_are_control_messages():
    assert parse_upbit_message(b'{"status":"UP"}')[0].kind == "status"
    error = load("upbit_errors_examples")[-1]["body"]
    [msg] = parse_upbit_message(orjson.dumps(error))
    assert msg.kind == "error" and msg.detail["name"] == "INVALID_AUTH"


def test_upbit_ticker_and_trade_are_ignored_not_errors():
    for name in ("upbit_ws_ticker_default_docexample", "upbit_ws_trade_default_snapshot"):
        [msg] = parse_upbit_message(raw(name))
        assert isinstance(msg, ControlMessage) and msg.kind == "ignored"


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b'{"type":"orderbook","code":"KRW-BTC","orderbook_units":[{"ask_price":"x","bid_price":1,"ask_size":1,"bid_size":1}]}', "not a number"),
        (b'{"type":"orderbook","code":"KRW-BTC","orderbook_units":[{"ask_price":10,"bid_price":11,"ask_size":1,"bid_size":1}]}', "crossed"),
        (b'{"type":"orderbook","code":"KRW-BTC"}', "no units"),
        (b'{"type":"orderbook","code":"KRW-BTC","orderbook_units":[{"ask_price":10,"bid_price":9,"ask_size":-1,"bid_size":1}]}', "out of range"),
        (b'{"type":"orderbook","orderbook_units":[]}', "bad code"),
        (b"\xff\xfe not json", "not JSON"),
        (b'{"type":"candle.1s"}', "unknown"),
    ],
)
def test_rejects_malformed_upbit_orderbooks_with_a_reason(payload, reason):
    with pytest.raises(FeedMessageError, match=reason):
        parse_upbit_message(payload)


def test_parses_binance_diff_depth_doc_example():
    diff = parse_binance_message(raw("binance_ws_depth_diff_docexample"))
    assert isinstance(diff, DepthDiff)
    assert (diff.market, diff.first_id, diff.final_id) == ("BNBBTC", 157, 160)
    assert diff.bids == [(Decimal("0.0024"), Decimal("10"))]


def test_parses_binance_combined_wrapper_and_partial_depth():
    wrapped = parse_binance_message(raw("binance_ws_combined_depth20_wrapper_constructed"))
    assert isinstance(wrapped, BookSnapshot)
    assert wrapped.market.endswith("USDT") and wrapped.last_update_id is not None
    with pytest.raises(FeedMessageError, match="without a stream name"):
        parse_binance_message(raw("binance_ws_depth_partial_docexample"))


def test_binance_trade_bookticker_and_acks_are_not_book_data():
    for name in ("binance_ws_trade_combined_ethusdt_recorded", "binance_ws_bookticker_docexample",
                 "binance_ws_bookticker_combined_ethusdt_recorded", "binance_ws_aggtrade_combined_ethusdt_recorded"):
        assert parse_binance_message(raw(name)).kind == "ignored"
    ack = load("binance_ws_subscribe_exchange_docexample")
    assert parse_binance_message(orjson.dumps(ack["subscribe_response"])).kind == "ack"
    assert parse_binance_message(orjson.dumps(ack["server_shutdown_combined"])).kind == "shutdown"
    assert parse_binance_message(orjson.dumps(ack["server_shutdown_raw"])).kind == "shutdown"


def test_binance_levels_with_extra_elements_are_tolerated():
    msg = b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[["1.5","2",[]]],"a":[],"x":"new field"}'
    assert parse_binance_message(msg).bids == [(Decimal("1.5"), Decimal("2"))]


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b'{"e":"depthUpdate","s":"BTCUSDT","U":5,"u":4,"b":[],"a":[]}', "bad update ids"),
        (b'{"e":"depthUpdate","s":"BTCUSDT","u":4,"b":[],"a":[]}', "without 'U'"),
        (b'{"e":"depthUpdate","s":"BTCUSDT","U":1,"u":4,"b":[["1"]],"a":[]}', "malformed"),
        (b'{"e":"depthUpdate","s":"BTCUSDT","U":1,"u":4,"b":[["1","NaN"]],"a":[]}', "out of range"),
        (b'{"stream":"btcusdt@depth","data":{"e":"depthUpdate","b":[["1","x"', "not JSON"),
        (b"[1,2]", "unexpected list"),
    ],
)
def test_rejects_malformed_binance_messages_with_a_reason(payload, reason):
    with pytest.raises(FeedMessageError, match=reason):
        parse_binance_message(payload)


def test_parses_recorded_binance_rest_depth():
    snapshot = parse_binance_depth_snapshot("BTCUSDT", load("binance_rest_depth_btcusdt_recorded"))
    assert snapshot.last_update_id > 0 and snapshot.bids and snapshot.asks
    assert snapshot.bids[0][0] < snapshot.asks[0][0]


def test_an_upbit_frame_read_to_a_depth_gives_its_best_levels():
    [whole] = parse_upbit_message(raw("upbit_ws_orderbook_default_krweth"))
    [best] = parse_upbit_message(raw("upbit_ws_orderbook_default_krweth"), depth=3)
    assert (best.bids, best.asks) == (whole.bids[:3], whole.asks[:3]) and len(whole.bids) > 3
