from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from trading import engine
from trading.state import BookRecord, FxRecord, PriceRecord


@pytest.fixture(autouse=True)
def _fresh_limits():
    engine.forget_limits()
    yield
    engine.forget_limits()


@pytest.fixture
def market(state):
    """Write both venues' books for a coin (and the KRW/USDT rate) as the feeds would."""

    def put(symbol="BTC", upbit_bids=(("139000000", "1"),), upbit_asks=(("139100000", "1"),),
            binance_bids=(("99000", "1"),), binance_asks=(("99010", "1"),), fx="1400", age_ms=0, skew_ms=0):
        now = datetime.now(UTC) - timedelta(milliseconds=age_ms)
        books = [
            BookRecord("upbit", symbol, [(D(p), D(q)) for p, q in upbit_bids], [(D(p), D(q)) for p, q in upbit_asks], now, now),
            BookRecord("binance", symbol, [(D(p), D(q)) for p, q in binance_bids], [(D(p), D(q)) for p, q in binance_asks],
                       now - timedelta(milliseconds=skew_ms), now),
        ]
        prices = [PriceRecord(b.exchange, symbol, b.bids[0][0], b.asks[0][0], (b.bids[0][0] + b.asks[0][0]) / 2,
                              b.timestamp, now) for b in books]
        rate = FxRecord("upbit", D(fx), D(fx) - D("0.5"), D(fx) + D("0.5"), now)
        state.write_market(prices, books, [rate])
        state.set_rules("binance", symbol, {"step_size": "0.00001", "tick_size": "0.01", "min_notional": "5"})

    return put
