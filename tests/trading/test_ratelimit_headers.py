"""Issue 11: malformed rate-limit headers are bookkeeping noise, never an exception out of an adapter."""

import math

import orjson
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.exchanges import binance
from trading.exchanges.base import retry_after_seconds
from trading.exchanges.errors import RateLimited
from trading.exchanges.upbit import UpbitAdapter

GARBAGE = ["", " ", "abc", "nan", "NaN", "inf", "-inf", "1e400", "-5", "9" * 5000, "²", "٣", "1.5", "0x10",
           "\x00", "sec=²; group=order", "group=;sec=", "=;=;=", "sec=99999999999999999999; group=default",
           "group=order; min=abc; sec=NaN", ";;;", "group=order; sec=-1"]


def response(status=200, headers=None, body=None):
    r = requests.Response()
    r.status_code = status
    r.headers.update(headers or {})
    r._content = orjson.dumps(body if body is not None else {})
    return r


@pytest.mark.parametrize("value", GARBAGE)
def test_binance_garbage_weight_header_is_ignored(value):
    adapter = binance.BinanceAdapter("http://127.0.0.1:9", "k", "s")
    adapter._track(response(headers={"X-MBX-USED-WEIGHT-1M": value, "x-mbx-used-weight": "12"}))
    assert adapter.used_weight.get("1M", 0) >= 0
    assert "1M" not in adapter.used_weight or str(adapter.used_weight["1M"]) == value.strip()


@pytest.mark.parametrize("value", GARBAGE)
@pytest.mark.parametrize("status", [418, 429])
def test_binance_garbage_retry_after_still_gives_a_typed_bounded_rate_limit(value, status):
    adapter = binance.BinanceAdapter("http://127.0.0.1:9", "k", "s")
    error = adapter._error(response(status, {"Retry-After": value}, {"code": -1003, "msg": "too many"}))
    assert isinstance(error, RateLimited)
    assert math.isfinite(error.retry_after) and 0 <= error.retry_after <= 600


@pytest.mark.parametrize("value", GARBAGE)
def test_upbit_garbage_remaining_req_is_ignored(value):
    adapter = UpbitAdapter("http://127.0.0.1:9", "k", "s" * 64)
    adapter._track(response(headers={"Remaining-Req": value}))
    assert all(isinstance(v, int) and 0 <= v < 10**6 for v in adapter.remaining_req.values())


def test_upbit_remaining_req_still_read():
    adapter = UpbitAdapter("http://127.0.0.1:9", "k", "s" * 64)
    adapter._track(response(headers={"Remaining-Req": "group=order; min=1800; sec=7"}))
    assert adapter.remaining_req == {"order": 7}


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_any_header_text_never_raises(weight, remaining):
    b = binance.BinanceAdapter("http://127.0.0.1:9", "k", "s")
    u = UpbitAdapter("http://127.0.0.1:9", "k", "s" * 64)
    r = requests.Response()
    r.status_code = 429
    # Header values arrive as str decoded from latin-1 bytes; give the parsers anything.
    r.headers.update({"X-MBX-USED-WEIGHT-1M": weight, "Retry-After": weight, "Remaining-Req": remaining})
    r._content = b"{}"
    b._track(r)
    u._track(r)
    assert isinstance(b._error(r), RateLimited)
    assert math.isfinite(retry_after_seconds(weight, 1.0))


def test_garbage_headers_on_an_order_answer_do_not_change_its_outcome(monkeypatch):
    """An order answer is classified by status and body; a garbage header on it raises nothing untyped."""
    adapter = UpbitAdapter("http://127.0.0.1:9", "k", "s" * 64)
    answer = response(201, {"Remaining-Req": "group=order; sec=²"}, {"uuid": "u-1"})
    monkeypatch.setattr(adapter, "_send", lambda *a, **kw: answer)
    assert adapter._private_once("POST", "/v1/orders", None, {"market": "KRW-BTC"}, dict) == {"uuid": "u-1"}
