"""Execution prices from the edge (issue 9.3): each leg's limit leaves the minimum net spread, the
expected net includes the third leg, and closes wait for fresh books."""

from decimal import Decimal as D

import pytest

from liveguard.models import GuardEvent
from trading import engine, exits
from trading.models import Order, Pair, Position, Signal
from trading.signals import Fees, net_pct

pytestmark = pytest.mark.django_db

# The market fixture's KRW-USDT book: 1,399.5 / 1,400.5 around 1,400: half spread 0.5 / 1,400.
THIRD_LEG = D("0.0005") + D("0.5") / D("1400")
FEES = Fees(upbit=D("0.0005"), binance=D("0.001"), usdt_conversion=THIRD_LEG)


def test_the_engine_sends_limits_that_still_net_the_minimum_if_both_fill_at_them(state, market):
    # Binance asks 99,010 USDT = 138,614,000 KRW; Upbit bids 139,307,000 + 0.05 %: about 0.35 % net of
    # 0.1 % + 0.0857 % (third leg) + 0.05 %.
    market("BTC", upbit_bids=(("139400000", "1"),), upbit_asks=(("139500000", "1"),),
           binance_bids=(("99000", "1"),), binance_asks=(("99010", "1"),))
    assert engine.evaluate_symbol("BTC", state=state) == "executed"
    signal = Signal.objects.get()
    # (139,400,000 x 0.9995 - 138,614,000 x 1.0018571) / (138,614,000 x 1.0018571) = 0.3305 %
    assert abs(signal.net_spread_pct - D("0.3305")) < D("0.0001")
    buy = Order.objects.get(side="buy")
    sell = Order.objects.get(side="sell")
    assert (buy.exchange, sell.exchange) == ("binance", "upbit")
    # Filled at both limits, the pair nets the 0.3 % minimum (to the ledger's 1e-8 rounding of the limits) ...
    at_limits = net_pct(buy.price * D("1400"), sell.price, FEES.leg("binance"), FEES.leg("upbit"))
    assert abs(at_limits - D("0.3")) < D("0.000001")
    # ... and the limits sit barely beyond the expected prices (0.015 % each side), not 0.3 % away.
    assert D("99010") < buy.price < D("99010") * D("1.0002")
    assert D("139400000") * D("0.9998") < sell.price < D("139400000")
    # At the old limits (the expected price +/- 0.3 %) the same pair could have filled at about -0.27 %.
    old = net_pct(D("99010") * D("1.003") * D("1400"), D("139400000") * D("0.997"), FEES.leg("binance"), FEES.leg("upbit"))
    assert old < D("-0.26")
    pair = Pair.objects.get()
    assert pair.state == "filled" and pair.net_pnl > 0


def open_position(state, market):
    market("BTC", upbit_bids=(("143000000", "1"),), upbit_asks=(("143100000", "1"),),
           binance_bids=(("99000", "1"),), binance_asks=(("99010", "1"),))
    assert engine.evaluate_symbol("BTC", state=state) == "executed"
    return Position.objects.get(symbol="BTC")


def test_a_close_waits_for_fresh_books(state, market):
    open_position(state, market)
    converged = dict(upbit_bids=(("138500000", "1"),), upbit_asks=(("138600000", "1"),),
                     binance_bids=(("99000", "1"),), binance_asks=(("99010", "1"),))
    market("BTC", **converged, age_ms=2000)  # take-profit territory, but the books are 2 s old
    assert exits.check_positions(state) == []
    assert exits.close_position(state, "BTC", "flatten") is None
    assert not Pair.objects.filter(kind="close").exists() and Position.objects.exists()
    events = GuardEvent.objects.filter(check_name="stale_quote")
    assert events.count() == 1  # one record per few seconds, not one per tick
    assert events.get().reason.startswith("close waits: ") and "ms old" in events.get().reason
    # Books the right age but too far apart are refused the same way.
    market("BTC", **converged, skew_ms=1000)
    assert exits.close_position(state, "BTC", "flatten") is None
    # Fresh books: the close goes.
    market("BTC", **converged)
    assert exits.check_positions(state) == ["BTC"]
    assert Pair.objects.get(kind="close").stage == "closed"
