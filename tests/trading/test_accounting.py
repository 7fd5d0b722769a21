"""docs/ACCOUNTING.md worked by hand, and the model's identities under any sequence of events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trading import accounting, ledger
from trading.accounting import Marks
from trading.models import EquitySnapshot, LedgerEntry, Order, Pair

pytestmark = pytest.mark.django_db
X = D("1400")


def start():
    ledger.deposit("upbit", "KRW", D("10000000"), value_krw=D("10000000"))
    ledger.deposit("upbit", "BTC", D("0.1"), value_krw=D("14300000"))
    ledger.deposit("binance", "USDT", D("10000"), value_krw=D("14000000"))
    ledger.deposit("binance", "BTC", D("0.1"), value_krw=D("14000000"))


def marks(upbit="143000000", binance="100000", fx=X, **more):
    prices = {("upbit", "BTC"): D(upbit), ("binance", "BTC"): D(binance)}
    prices.update({("binance", k): D(v) for k, v in more.items()})
    return Marks(D(fx), prices)


def fill(pair, venue, side, price, qty, fee, fee_asset, fee_value=None, symbol="BTC"):
    order = Order.objects.create(client_order_id=f"{pair.id.hex[:8]}{venue}{side}{Order.objects.count()}", pair=pair,
                                 exchange=venue, symbol=symbol, side=side, quantity=D(qty), price=D(price))
    rate = D(1) if venue == "upbit" else pair.fx_rate
    ledger.record_fill(order, D(price), D(qty), D(0), fee=D(fee), fee_asset=fee_asset, quote_rate_krw=rate,
                       fee_value_krw=fee_value)
    return order


def open_pair():
    """Example 1: buy 0.01 BTC on Binance at 100,010, sell 0.01 on Upbit at 142,990,000."""
    pair = Pair.objects.create(symbol="BTC", buy_exchange="binance", sell_exchange="upbit", mode="paper", fx_rate=X,
                               stage="closed", state="filled", quantity=D("0.01"),
                               buy_price=D("140014000"), sell_price=D("142990000"),
                               expected_buy_price=D("140014000"), expected_sell_price=D("142990000"),
                               gross_pnl=D("29760"), fees=D("2115.09"), net_pnl=D("27644.91"))
    fill(pair, "binance", "buy", "100010", "0.01", "0.00001", "BTC")
    fill(pair, "upbit", "sell", "142990000", "0.01", "714.95", "KRW")
    return pair


def test_the_start_is_flows_only():
    start()
    v = accounting.valuation(marks())
    assert v.equity == v.flows == D("52300000") and v.pnl == 0 and v.realized == 0 and v.unrealized == 0


def test_example_1_an_opening_pair_is_a_small_loss_not_its_spread():
    start()
    snapshot_before = accounting.snapshot(marks(), now=datetime.now(UTC) - timedelta(seconds=1))
    open_pair()
    assert ledger.balances() == {("upbit", "KRW"): D("11429185.05"), ("upbit", "BTC"): D("0.09"),
                                 ("binance", "USDT"): D("8999.90"), ("binance", "BTC"): D("0.10999")}
    v = accounting.valuation(marks())
    assert v.equity == D("52297645.05") and v.pnl == D("-2354.95")
    fee_cost = (D("0.00001") * (D("14000000") + D("1400140")) / D("0.11")).quantize(D("1e-8"))  # 1,400.01
    assert v.realized == D("-100") - D("714.95") - fee_cost  # -2,214.9627…
    assert v.unrealized == D("15398600") - (D("15400140") - fee_cost)  # Binance BTC worth less than its cost
    assert v.equity == v.flows + v.realized + v.unrealized
    period = accounting.period_pnl(v, X, snapshot_before.taken_at)
    assert (period.pnl, period.trading, period.spread_captured, period.slippage, period.hedges, period.fees) == (
        D("-2354.95"), D("27644.91"), D("29760"), D("0"), D("0"), D("-2115.09"))
    assert period.fx == 0 and period.inventory == D("-29999.86")
    assert period.trading + period.fx + period.inventory == period.pnl


def test_example_2_convergence_makes_the_captured_spread_equity():
    start()
    base = accounting.snapshot(marks(), now=datetime.now(UTC) - timedelta(seconds=1))
    open_pair()
    v = accounting.valuation(marks(upbit="141400000", binance="101000"))
    assert v.equity == D("52307631.05") and v.pnl == D("7631.05")
    held = D("0.1") * (D("141400000") - D("143000000")) + D("0.1") * (D("101000") - D("100000")) * X
    assert held == D("-20000") and v.pnl - held == D("27631.05")
    period = accounting.period_pnl(v, X, base.taken_at)
    assert period.trading == D("27644.91") and period.inventory == D("-20013.86")


def test_example_3_a_bnb_fee_is_valued_at_bnb_not_at_the_coin():
    ledger.deposit("binance", "USDT", D("10000"), value_krw=D("14000000"))
    ledger.deposit("binance", "BNB", D("1"), value_krw=D("840000"))  # 600 USDT at 1,400
    pair = Pair.objects.create(symbol="BTC", buy_exchange="binance", sell_exchange="upbit", fx_rate=X)
    bnb_fee = D("0.0011875")
    value = bnb_fee * D("600") * X
    assert value == D("997.5") and bnb_fee * D("95000") * X != value  # the coin's price would say 157,937.5
    fill(pair, "binance", "buy", "95000", "0.01", str(bnb_fee), "BNB", fee_value=value)
    fee_entry = LedgerEntry.objects.get(kind="fee")
    assert fee_entry.asset == "BNB" and fee_entry.value_krw == D("997.5")
    v = accounting.valuation(marks(binance="95000", BNB="600"))
    assert v.realized == -(bnb_fee * D("840000")).quantize(D("1e-8"))  # the BNB given, at its cost (600 USDT at 1,400)
    assert v.pnl == -(bnb_fee * D("600") * X)  # equity falls by the BNB given at its mark
    assert v.equity == v.flows + v.realized + v.unrealized


def test_example_4_flows_are_not_performance_and_fx_is():
    start()
    open_pair()
    before = accounting.valuation(marks(upbit="141400000", binance="101000"))
    ledger.deposit("binance", "USDT", D("1000"), value_krw=D("1400000"))
    after = accounting.valuation(marks(upbit="141400000", binance="101000"))
    assert after.equity - before.equity == D("1400000") and after.pnl == before.pnl
    base = accounting.snapshot(marks(upbit="141400000", binance="101000"))  # after the pair: not in the period
    assert base.usdt_exposure == D("9999.90") + D("0.10999") * D("101000")
    moved = accounting.valuation(marks(upbit="141400000", binance="101000", fx="1410"))
    period = accounting.period_pnl(moved, D("1410"), base.taken_at)
    assert period.fx == D("211088.90") and period.pnl == D("211088.90") and period.inventory == 0


def test_a_withdrawal_is_a_flow_out_and_realizes_nothing_at_cost():
    start()
    ledger.withdraw("binance", "USDT", D("1000"), value_krw=D("1400000"))
    v = accounting.valuation(marks())
    assert v.flows == D("50900000") and v.pnl == 0 and v.realized == 0


def test_flows_booked_without_a_value_take_the_first_marks_seen():
    ledger.deposit("binance", "USDT", D("100"))  # a live start before any rate was known
    assert accounting.value_flows(marks()) == 1
    assert LedgerEntry.objects.get().value_krw == D("140000")


def test_a_daily_period_starts_at_the_last_snapshot_before_it():
    start()
    day = datetime(2026, 11, 25, tzinfo=UTC)
    EquitySnapshot.objects.create(taken_at=day - timedelta(seconds=30), equity=D("52300000"), flows=D("52300000"),
                                  realized=0, unrealized=0, fx_rate=X)
    EquitySnapshot.objects.create(taken_at=day + timedelta(seconds=30), equity=D("1"), flows=D("0"),
                                  realized=0, unrealized=0, fx_rate=X)
    assert accounting.baseline(day).equity == D("52300000")


# --- the identities, under any sequence --------------------------------------------------------
ASSETS = {"upbit": ["KRW", "BTC"], "binance": ["USDT", "BTC", "BNB"]}
amounts = st.decimals(min_value=D("0.00000001"), max_value=D("100"), places=8)  # values stay in a money column
prices = st.decimals(min_value=D("0.01"), max_value=D("200000"), places=2)
events = st.lists(st.one_of(
    st.tuples(st.just("deposit"), st.sampled_from([("upbit", "KRW"), ("upbit", "BTC"), ("binance", "USDT"),
                                                   ("binance", "BTC"), ("binance", "BNB")]), amounts, prices),
    st.tuples(st.just("fill"), st.sampled_from(["upbit", "binance"]), st.sampled_from(["buy", "sell"]), amounts, prices,
              st.sampled_from(["quote", "coin", "BNB"])),
    st.tuples(st.just("withdraw"), st.sampled_from([("upbit", "KRW"), ("binance", "USDT")]), amounts, prices),
), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(events=events, fx=st.decimals(min_value=D("900"), max_value=D("2000"), places=2),
       marks_up=st.decimals(min_value=D("1"), max_value=D("300000000"), places=0),
       marks_bn=st.decimals(min_value=D("0.01"), max_value=D("200000"), places=2))
def test_equity_is_flows_plus_realized_plus_unrealized_after_any_sequence(events, fx, marks_up, marks_bn):
    LedgerEntry.objects.all().delete()
    from trading.models import Balance, Fill

    Fill.objects.all().delete()
    Order.objects.all().delete()
    Pair.objects.all().delete()
    Balance.objects.all().delete()
    pair = Pair.objects.create(symbol="BTC", buy_exchange="binance", sell_exchange="upbit", fx_rate=fx)
    for event in events:
        if event[0] == "deposit":
            _, (venue, asset), amount, price = event
            ledger.deposit(venue, asset, amount, value_krw=(amount * price).quantize(D("1e-8")))
        elif event[0] == "withdraw":
            _, (venue, asset), amount, price = event
            ledger.withdraw(venue, asset, amount, value_krw=(amount * price).quantize(D("1e-8")))
        else:
            _, venue, side, qty, price, fee_in = event
            quote = "KRW" if venue == "upbit" else "USDT"
            asset = {"quote": quote, "coin": "BTC", "BNB": "BNB" if venue == "binance" else quote}[fee_in]
            fee = (qty * D("0.001")).quantize(D("1e-8"))
            fill(pair, venue, side, str(price), str(qty), str(fee), asset,
                 fee_value=(fee * D("600") * fx).quantize(D("1e-8")) if asset == "BNB" else None)
    book = accounting.replay()
    assert book.total_basis() == book.flows + book.realized  # the invariant every event keeps
    m = Marks(fx, {("upbit", "BTC"): marks_up, ("binance", "BTC"): marks_bn, ("binance", "BNB"): D("600")})
    v = accounting.valuation(m, book)
    assert v.equity == v.flows + v.realized + v.unrealized
    assert v.pnl == v.realized + v.unrealized
    period = accounting.period_pnl(v, fx, None)
    assert period.trading + period.fx + period.inventory == period.pnl


def test_trading_at_the_marks_without_fees_makes_no_pnl():
    """A round trip priced exactly at the marks, no fees: nothing realized, nothing unrealized."""
    start()
    pair = Pair.objects.create(symbol="BTC", buy_exchange="binance", sell_exchange="upbit", fx_rate=X)
    fill(pair, "binance", "buy", "100000", "0.01", "0", "BTC")
    fill(pair, "upbit", "sell", "143000000", "0.01", "0", "KRW")
    fill(pair, "upbit", "buy", "143000000", "0.01", "0", "KRW")
    fill(pair, "binance", "sell", "100000", "0.01", "0", "USDT")
    v = accounting.valuation(marks())
    assert v.pnl == 0 and v.realized == 0 and v.unrealized == 0
