"""The signal engine against hand-worked examples."""

from datetime import UTC, datetime
from decimal import Decimal as D

from trading.signals import (
    Caps,
    Fees,
    best_opportunity,
    conversion_cost,
    evaluate_direction,
    leg_limits,
    net_pct,
    premium,
    vwap,
    walk,
)
from trading.state import BookRecord, FxRecord

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
    # The Binance leg also pays the third leg (the USDT sold for KRW on Upbit: here its 0.05 % fee, no spread known):
    # (1,044,750 x (1 - 0.001 - 0.0005) - 1,005,000 x 1.0005) / (1,005,000 x 1.0005) = 37,680.375 / 1,005,502.5
    assert abs(o.net_spread_pct - D("3.74741734")) < D("0.00000001")
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


# --- the third leg and the legs' limits (issue 9.3) ---------------------------------------------------------
# KRW-USDT at 1,399.3 / 1,400.7 around a 1,400 mid: half the spread is 0.7 / 1,400 = 0.05 %, plus Upbit's
# 0.05 % fee: converting the Binance leg's USDT costs c = 0.1 % of its notional.
USDT_BOOK = FxRecord("upbit", D("1400"), D("1399.3"), D("1400.7"), NOW)


def test_the_third_leg_is_upbits_fee_plus_half_the_krw_usdt_spread():
    assert conversion_cost(USDT_BOOK, D("0.0005")) == D("0.001")
    assert conversion_cost(FxRecord("fixed", D("1400"), None, None, NOW), D("0.0005")) == D("0.0005")
    fees = FEES.with_fx(USDT_BOOK)
    assert fees.usdt_conversion == D("0.001")
    assert fees.leg("upbit") == D("0.0005") and fees.leg("binance") == D("0.002")
    assert fees.of("binance") == D("0.001")  # the venue's own rate is unchanged


def test_the_net_spread_charges_the_third_leg_on_the_binance_notional_both_ways():
    fees = FEES.with_fx(USDT_BOOK)
    # Buy Binance at 100 USDT (140,000 KRW), sell Upbit at 140,841: the USDT is bought with KRW first.
    #   cost     = 140,000 x (1 + 0.001 + 0.001) = 140,280
    #   proceeds = 140,841 x (1 - 0.0005)        = 140,770.5795
    #   net      = 490.5795 / 140,280            = 0.34971 %
    # Without the third leg it would look like 630.5795 / 140,140 = 0.44996 %.
    up = book("upbit", [("140841", "1")], [("140900", "1")])
    bn = book("binance", [("99.9", "1")], [("100", "1")])
    o = evaluate_direction("BTC", bn, up, FX, fees, D("0.3"), Caps(D("1e9")), D("0.00001"))
    assert (o.buy_exchange, o.quantity) == ("binance", D("1"))
    assert abs(o.net_spread_pct - D("0.34971450")) < D("0.00000001")
    without = evaluate_direction("BTC", bn, up, FX, Fees(D("0.0005"), D("0.001"), usdt_conversion=D(0)), D("0.3"),
                                 Caps(D("1e9")), D("0.00001"))
    assert abs(without.net_spread_pct - D("0.44996")) < D("0.00001")
    # The other way, buy Upbit at 140,000 and sell Binance at 100.6 (140,840 KRW): the USDT received is sold for KRW.
    #   (140,840 x (1 - 0.001 - 0.001) - 140,000 x 1.0005) / (140,000 x 1.0005) = 488.32 / 140,070 = 0.34863 %
    up = book("upbit", [("139900", "1")], [("140000", "1")])
    bn = book("binance", [("100.6", "1")], [("100.7", "1")])
    o = evaluate_direction("BTC", up, bn, FX, fees, D("0.3"), Caps(D("1e9")), D("0.00001"))
    assert abs(o.net_spread_pct - D("0.348625687")) < D("0.000000001")
    # The premium's best nets carry it too.
    p = premium("BTC", up, bn, FX, fees)
    assert abs(p.best_net_upbit_to_binance - o.net_spread_pct) < D("1e-20")


def test_each_legs_limit_leaves_the_minimum_net_spread_when_both_fill_at_their_limits():
    """A pair expected at +0.35 % with a 0.3 % minimum: the limits, filled exactly, net 0.30 %."""
    fees = FEES.with_fx(USDT_BOOK)
    up = book("upbit", [("140841", "1")], [("140900", "1")])
    bn = book("binance", [("99.9", "1")], [("100", "1")])
    o = evaluate_direction("BTC", bn, up, FX, fees, D("0.3"), Caps(D("1e9")), D("0.00001"))
    # Surplus over the minimum, per coin: E = 140,841 x 0.9995 - 1.003 x 140,000 x 1.002 = 69.7395 KRW,
    # half to each leg:
    #   buy limit  = 140,000 + 34.86975 / (1.003 x 1.002) = 140,034.6961 KRW = 100.02478 USDT
    #   sell limit = 140,841 - 34.86975 / 0.9995          = 140,806.1128 KRW
    assert abs(o.buy_limit_native - D("100.0247829")) < D("0.0000001")
    assert abs(o.sell_limit_native - D("140806.1128")) < D("0.0001")
    # Barely beyond the expected prices: 0.025 % each, not 0.3 %.
    assert o.buy_limit_native / o.buy_price_native - 1 < D("0.00025")
    assert 1 - o.sell_limit_native / o.sell_price_native < D("0.00025")
    # Filled exactly at both limits the pair nets the minimum: (140,735.7097 - 140,314.7654) / 140,314.7654 = 0.30 %.
    at_limits = net_pct(o.buy_limit_native * FX, o.sell_limit_native, fees.leg("binance"), fees.leg("upbit"))
    assert at_limits >= D("0.3") - D("1e-20") and abs(at_limits - D("0.3")) < D("1e-20")
    # Today's limits (the expected prices +/- 0.3 %) would let it fill at a loss:
    #   buy 100.3 USDT = 140,420 x 1.002 = 140,700.84; sell 140,841 x 0.997 = 140,418.48 x 0.9995 = 140,348.27
    #   net = -352.57 / 140,700.84 = -0.25 %
    old = net_pct(o.buy_price * D("1.003"), o.sell_price * D("0.997"), fees.leg("binance"), fees.leg("upbit"))
    assert abs(old - D("-0.2506")) < D("0.0001")


def test_limits_never_go_beyond_the_minimum_and_sit_at_the_prices_without_room():
    buy, sell = leg_limits(D("100"), D("101"), D("0.001"), D("0.001"), D("0.3"))
    assert buy > D("100") and sell < D("101")
    assert abs(net_pct(buy, sell, D("0.001"), D("0.001")) - D("0.3")) < D("1e-20")
    # Any fill inside both limits does at least as well.
    assert net_pct(buy - D("0.01"), sell + D("0.01"), D("0.001"), D("0.001")) > D("0.3")
    # No surplus at all (cannot come from a signal, which nets more than the minimum): the expected prices.
    assert leg_limits(D("100"), D("100.1"), D("0.001"), D("0.001"), D("0.3")) == (D("100"), D("100.1"))
