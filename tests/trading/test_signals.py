"""The signal engine against hand-worked examples."""

from datetime import UTC, datetime
from decimal import Decimal as D

from trading.signals import Caps, Fees, best_opportunity, evaluate_direction, premium, vwap, walk
from trading.state import BookRecord

NOW = datetime(2026, 11, 25, tzinfo=UTC)
FEES = Fees(upbit=D("0.0005"), binance=D("0.001"))
FX = D("1400")


def book(exchange, bids, asks):
    return BookRecord(exchange, "BTC", [(D(p), D(q)) for p, q in bids], [(D(p), D(q)) for p, q in asks], NOW)


UPBIT = book("upbit", [("990000", "1")], [("1000000", "1"), ("1010000", "1")])
BINANCE = book("binance", [("750", "0.5"), ("745", "2")], [("760", "3")])


def test_walks_both_books_and_prices_the_size_actually_traded():
    o = evaluate_direction("BTC", UPBIT, BINANCE, FX, FEES, D("0.3"), Caps(D("1e9")), D("0.00001"))
    # Slices: 0.5 @ 1,000,000 vs 1,050,000; 0.5 @ 1,000,000 vs 1,043,000; 1 @ 1,010,000 vs 1,043,000.
    assert o.quantity == D("2")
    assert o.buy_price == D("1005000")
    assert o.sell_price_native == D("746.25")
    assert o.sell_price == D("1044750")
    # (1,044,750 x 0.999 - 1,005,000 x 1.0005) / (1,005,000 x 1.0005) = 38,202.75 / 1,005,502.5
    assert abs(o.net_spread_pct - D("3.79936897")) < D("0.00000001")
    assert o.top_buy_price == D("1000000") and o.top_sell_price == D("1050000")
    assert o.spread == D("39750")


def test_caps_the_notional_and_floors_to_the_lot_step():
    o = evaluate_direction("BTC", UPBIT, BINANCE, FX, FEES, D("0.3"), Caps(D("1500000")), D("0.001"))
    # 1,000,000 KRW buys 1 BTC; the last 500,000 buys 0.4950495... at 1,010,000 -> floored to 1.495.
    assert o.quantity == D("1.495")


def test_stops_at_the_first_slice_below_the_minimum_net_spread():
    # At 3.5% only the two slices against 1,050,000 and 1,043,000 at 1,000,000 qualify.
    o = evaluate_direction("BTC", UPBIT, BINANCE, FX, FEES, D("3.5"), Caps(D("1e9")), D("0.00001"))
    assert o.quantity == D("1")


def test_balances_cap_quote_and_base():
    caps = Caps(D("1e9"), buy_quote_available=D("500250"), sell_base_available=D("10"))
    o = evaluate_direction("BTC", UPBIT, BINANCE, FX, FEES, D("0.3"), caps, D("0.00001"))
    assert o.quantity == D("0.5")  # 500,250 KRW with the 0.05% fee kept aside buys 0.5
    caps = Caps(D("1e9"), sell_base_available=D("0.3"))
    assert evaluate_direction("BTC", UPBIT, BINANCE, FX, FEES, D("0.3"), caps, D("0.00001")).quantity == D("0.3")


def test_no_signal_when_the_reverse_direction_loses_or_the_order_is_too_small():
    assert evaluate_direction("BTC", BINANCE, UPBIT, FX, FEES, D("0.3"), Caps(D("1e9")), D("0.00001")) is None
    tiny = Caps(D("4000"))  # below Upbit's 5,000 KRW minimum
    assert evaluate_direction("BTC", UPBIT, BINANCE, FX, FEES, D("0.3"), tiny, D("0.00001")) is None


def test_best_opportunity_picks_the_profitable_direction():
    o = best_opportunity("BTC", UPBIT, BINANCE, FX, FEES, D("0.3"), lambda b, s: Caps(D("1e9")), D("0.00001"))
    assert (o.buy_exchange, o.sell_exchange) == ("upbit", "binance")


def test_premium_is_upbit_over_binance_times_rate():
    up = book("upbit", [("1399000", "1")], [("1401000", "1")])
    bn = book("binance", [("990", "1")], [("1010", "1")])
    p = premium("BTC", up, bn, D("1400"), FEES)
    assert p.premium_pct == D("0")  # 1,400,000 / (1,000 x 1,400) - 1
    # Buying Upbit at 1,401,000 and selling Binance at 990 x 1,400 loses, after fees.
    assert p.best_net_upbit_to_binance < 0 and p.best_net_binance_to_upbit < 0


def test_walk_and_vwap_helpers():
    asks = [(D("10"), D("1")), (D("11"), D("1"))]
    bids = [(D("20"), D("5"))]
    assert walk(asks, bids, D(0), D(0), D(0), D("1.5"), D("1e9")) == D("1.5")
    assert vwap(asks, D("2")) == D("10.5")
    assert vwap(asks, D("3")) is None
