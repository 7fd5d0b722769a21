"""Fees as charged (issue 9.6): per-venue, per-account rates from the admin, and fees paid in BNB
valued at BNB's price when filled -- never at the traded coin's."""

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest
import requests

from liveguard.models import AuditLog
from tests.conftest import start_venue
from trading import engine, ledger
from trading import fees as fee_schedule
from trading.exchanges.binance import BinanceAdapter
from trading.exchanges.types import LegOrder, LegReport, TradeFill
from trading.exchanges.upbit import UpbitAdapter
from trading.execution import PairExecutor, PairRequest
from trading.models import FeeSchedule, Fill, Order, Pair
from trading.paper import PaperVenue
from trading.reconcile import reconcile
from trading.signals import Fees
from trading.state import BookRecord, PriceRecord

pytestmark = pytest.mark.django_db
SECRET = "s" * 64


def bnb_at(state, mid="600"):
    """BNBUSDT in the hot state as the Binance feed writes it."""
    now = datetime.now(UTC)
    bid, ask = D(mid) - D("0.05"), D(mid) + D("0.05")
    book = BookRecord("binance", "BNB", [(bid, D("100"))], [(ask, D("100"))], now, now)
    state.write_market([PriceRecord("binance", "BNB", bid, ask, D(mid), now, now)], [book])


def paper_pair(state, fees: Fees, quantity=D("0.01")):
    """Buy 0.01 BTC on Binance at 95,000 USDT, sell it on Upbit at 133,000,000 KRW, at 1,400 KRW/USDT."""
    now = datetime.now(UTC)
    books = [BookRecord("binance", "BTC", [(D("94990"), D("1"))], [(D("95000"), D("1"))], now, now),
             BookRecord("upbit", "BTC", [(D("133000000"), D("1"))], [(D("133100000"), D("1"))], now, now)]
    state.write_market([PriceRecord(b.exchange, "BTC", b.bids[0][0], b.asks[0][0], b.bids[0][0], now, now) for b in books],
                       books)
    state.set_rules("binance", "BTC", {"step_size": "0.00001", "tick_size": "0.01", "min_notional": "5"})
    executor = PairExecutor(state, fees, {name: PaperVenue(name, state, fees) for name in ("upbit", "binance")},
                            mode="paper")
    pair = Pair.objects.create(symbol="BTC", buy_exchange="binance", sell_exchange="upbit", mode="paper")
    return executor.execute(pair, PairRequest("BTC", "binance", "upbit", quantity, D("95000"), D("133000000"),
                                              D("1400"), D("0.00001")))


# --- rates ------------------------------------------------------------------------------------------------
def test_without_a_schedule_the_settings_rates_apply():
    fees = fee_schedule.load()
    assert (fees.upbit, fees.binance, fees.binance_in_bnb) == (D("0.0005"), D("0.001"), False)


def test_binance_vip_tiers_and_the_bnb_discount(state):
    fee_schedule.update_schedule("binance", state=state)  # a row at its defaults: VIP 0
    assert fee_schedule.load().binance == D("0.001")
    fee_schedule.update_schedule("binance", state=state, vip_tier=3)
    assert fee_schedule.load().binance == D("0.0006")  # VIP 3 taker 0.06 %
    fee_schedule.update_schedule("binance", state=state, vip_tier=0, pay_fees_in_bnb=True)
    fees = fee_schedule.load()
    # 0.1 % less 25 % when paid in BNB; what is charged if BNB cannot pay stays known.
    assert (fees.binance, fees.binance_in_bnb, fees.binance_undiscounted) == (D("0.00075"), True, D("0.001"))
    fee_schedule.update_schedule("binance", state=state, vip_tier=9)
    rates = fee_schedule.rates("binance", FeeSchedule.objects.get(venue="binance"))
    assert (rates.taker, rates.maker) == (D("0.00018"), D("0.00009"))  # 0.024 % / 0.012 % x 0.75
    # An account's negotiated rate wins over the tier's published one.
    fee_schedule.update_schedule("binance", state=state, taker_rate=D("0.0002"), pay_fees_in_bnb=False)
    assert fee_schedule.load().binance == D("0.0002")
    fee_schedule.update_schedule("upbit", state=state, taker_rate=D("0.00139"))
    assert fee_schedule.load().upbit == D("0.00139")


def test_schedules_are_validated():
    from django.core.exceptions import ValidationError

    for bad in (dict(venue="upbit", pay_fees_in_bnb=True), dict(venue="upbit", vip_tier=2),
                dict(venue="binance", vip_tier=12), dict(venue="binance", taker_rate=D("1.5")),
                dict(venue="binance", bnb_discount_pct=D("100"))):
        with pytest.raises(ValidationError):
            FeeSchedule(**bad).full_clean()


def test_each_account_has_its_own_rates(state, settings):
    fee_schedule.update_schedule("binance", "desk-2", state=state, vip_tier=4)
    assert fee_schedule.load().binance == D("0.001")  # the default account is unchanged
    settings.FEE_ACCOUNT = "desk-2"
    assert engine.fees(state).binance == D("0.00054")


def test_a_rate_change_takes_effect_on_the_next_evaluation(state, market):
    # Binance asks 99,010 USDT (138,614,000 KRW), Upbit bids 139,307,000: 0.5 % gross. Costs at VIP 0:
    # 0.1 % Binance + 0.0857 % third leg (0.05 % fee + 0.5 / 1,400 half spread) + 0.05 % Upbit = 0.2357 %,
    # net 0.2636 % < 0.3 %: no signal.
    books = dict(upbit_bids=(("139307000", "1"),), upbit_asks=(("139400000", "1"),),
                 binance_bids=(("99000", "1"),), binance_asks=(("99010", "1"),))
    market("BTC", **books)
    assert engine.evaluate_symbol("BTC", state=state) == "none"
    assert engine.fees(state).binance == D("0.001")  # cached for a few seconds...
    # ... but an edit bumps the version: VIP 9 with BNB (0.018 %) leaves a 0.3466 % net.
    fee_schedule.update_schedule("binance", state=state, vip_tier=9, pay_fees_in_bnb=True)
    market("BTC", **books)
    assert engine.evaluate_symbol("BTC", state=state) == "executed"


def test_edits_in_the_admin_are_audited_and_reach_every_worker(admin_client, state):
    version = state.limits_version()
    form = dict(venue="binance", account="default", vip_tier="1", taker_rate="", maker_rate="", bnb_discount_pct="25")
    response = admin_client.post("/admin/trading/feeschedule/add/", form)
    assert response.status_code == 302, response.content[:2000]
    schedule = FeeSchedule.objects.get(venue="binance")
    assert state.limits_version() == version + 1
    response = admin_client.post(f"/admin/trading/feeschedule/{schedule.pk}/change/", {**form, "pay_fees_in_bnb": "on"})
    assert response.status_code == 302
    entry = AuditLog.objects.get(model="FeeSchedule binance/default", field="pay_fees_in_bnb", new_value="True")
    assert entry.old_value == "False" and entry.user.is_superuser
    assert engine.fees(state).binance == D("0.00075")  # VIP 1 taker 0.1 % x 0.75
    assert admin_client.get("/admin/trading/feeschedule/").status_code == 200


# --- fees paid in BNB, paper ------------------------------------------------------------------------------
def test_a_bnb_fee_is_valued_at_bnbs_price_not_the_coins(state):
    """0.01 BTC at 95,000 USDT = 950 USDT; 0.075 % = 0.7125 USDT = 0.0011875 BNB at 600 USDT;
    at 1,400 KRW/USDT that is 997.5 KRW. Valued at BTC's price it would be 0.0011875 x 95,000 x 1,400
    = 157,937.5 KRW (the figure the issue found)."""
    bnb_at(state, "600")
    ledger.deposit("binance", "BNB", D("1"))
    pair = paper_pair(state, Fees(upbit=D("0.0005"), binance=D("0.00075"), binance_in_bnb=True,
                                  binance_undiscounted=D("0.001")))
    assert pair.state == "filled"
    fill = Fill.objects.get(order__exchange="binance")
    assert (fill.fee, fill.fee_asset, fill.fee_krw) == (D("0.0011875"), "BNB", D("997.5"))
    assert fill.fee_note == "BNB at 600 USDT (price record)"
    # The pair's fees: 997.5 KRW on Binance + 0.05 % of 1,330,000 KRW on Upbit = 665.
    assert pair.fees == D("1662.5")
    # The coin bought arrives whole; the fee comes out of the BNB balance.
    assert ledger.balance("binance", "BTC") == D("0.01")
    assert ledger.balance("binance", "BNB") == D("0.9988125")


def test_without_a_bnb_price_paper_charges_the_full_rate_in_the_asset_received_and_says_so(state):
    pair = paper_pair(state, Fees(upbit=D("0.0005"), binance=D("0.00075"), binance_in_bnb=True,
                                  binance_undiscounted=D("0.001")))
    fill = Fill.objects.get(order__pair=pair, order__exchange="binance")
    assert (fill.fee, fill.fee_asset) == (D("0.00001"), "BTC")  # 0.1 % of 0.01 BTC
    assert fill.fee_krw == D("1330")  # 0.00001 BTC x 95,000 x 1,400
    assert "BNB fees on, charged in BTC" in fill.fee_note


class BnbFeeVenue(PaperVenue):
    """A Binance that reports its commission in BNB (as a live one with BNB burn does)."""

    def submit(self, order):
        report = super().submit(order)
        fills = tuple(TradeFill(f.trade_id, f.price, f.quantity, D("0.0011875"), "BNB") for f in report.fills)
        return LegReport(report.venue, report.symbol, report.side, report.client_id, report.status,
                         quantity=report.quantity, executed=report.executed, quote_amount=report.quote_amount,
                         fills=fills, exchange_order_id=report.exchange_order_id)


def test_a_bnb_fee_with_no_price_anywhere_is_flagged_unvalued_not_valued_at_the_coin(state):
    paper_pair(state, Fees(upbit=D("0.0005"), binance=D("0.001")))  # books and rules in place
    fees = Fees(upbit=D("0.0005"), binance=D("0.00075"), binance_in_bnb=True)
    executor = PairExecutor(state, fees, {"upbit": PaperVenue("upbit", state, fees), "binance": BnbFeeVenue("binance", state, fees)},
                            mode="paper")
    pair = Pair.objects.create(symbol="BTC", buy_exchange="binance", sell_exchange="upbit", mode="paper")
    pair = executor.execute(pair, PairRequest("BTC", "binance", "upbit", D("0.01"), D("95000"), D("133000000"),
                                              D("1400"), D("0.00001")))
    fill = Fill.objects.get(order__pair=pair, order__exchange="binance")
    assert fill.fee_asset == "BNB" and fill.fee_krw is None
    assert fill.fee_note == "BNB fee not valued: no BNB price known"
    assert pair.fees == D("665")  # Upbit's fee only: nothing invented for the BNB
    # The BNB fee is valued when a price appears in time for the next fill (here: a second pair).
    bnb_at(state, "600")
    pair = Pair.objects.create(symbol="BTC", buy_exchange="binance", sell_exchange="upbit", mode="paper")
    pair = executor.execute(pair, PairRequest("BTC", "binance", "upbit", D("0.01"), D("95000"), D("133000000"),
                                              D("1400"), D("0.00001")))
    assert Fill.objects.get(order__pair=pair, order__exchange="binance").fee_krw == D("997.5")


def test_fee_valuer_by_asset(state):
    order = Order(exchange="binance", symbol="ETH", side="buy", quantity=D("1"), price=D("0"))
    valuer = fee_schedule.FeeValuer(state, None, order, quote_rate=D("1400"))
    assert valuer.value(D("3500"), D("0.001"), "ETH") == (D("4900.000"), "")  # the coin at the fill's price
    assert valuer.value(D("3500"), D("3.5"), "USDT")[0] == D("4900.0")
    assert valuer.value(D("3500"), D("1"), "XYZ") == (None, "fee in XYZ not valued: no price for it")
    bnb_at(state, "650")
    assert valuer.value(D("3500"), D("0.01"), "BNB")[0] == D("9100.00")  # 0.01 x 650 x 1,400
    upbit = fee_schedule.FeeValuer(state, None, Order(exchange="upbit", symbol="ETH", side="sell"))
    assert upbit.value(D("4900000"), D("2450"), "KRW") == (D("2450"), "")


# --- fees paid in BNB on the venue, live ------------------------------------------------------------------
@pytest.fixture
def venue():
    thread = start_venue(4,
                         ("binance", "bnb-key", SECRET, {"USDT": "100000", "BTC": "1", "BNB": "2"}, {"bnb_burn": True}),
                         ("upbit", "bnb-key", SECRET, {"KRW": "1000000000", "BTC": "1"}),
                         paused=True)
    yield thread
    thread.stop()


def live_adapters(venue):
    return {"binance": BinanceAdapter(venue.server.binance_url, "bnb-key", SECRET, lookup_budget_s=2),
            "upbit": UpbitAdapter(venue.server.upbit_url, "bnb-key", SECRET, timeout=2, lookup_budget_s=2)}


def ticker(venue, market):
    body = requests.get(f"{venue.server.binance_url}/api/v3/ticker/bookTicker", params={"symbol": market}, timeout=5).json()
    return D(body["bidPrice"]), D(body["askPrice"])


def test_the_venue_lists_bnb_and_switches_bnb_burn(venue):
    bid, ask = ticker(venue, "BNBUSDT")
    assert D("500") < bid < ask < D("700")
    info = requests.get(f"{venue.server.binance_url}/api/v3/exchangeInfo", params={"symbol": "BNBUSDT"}, timeout=5).json()
    assert info["symbols"][0]["baseAsset"] == "BNB"
    adapter = live_adapters(venue)["binance"]
    assert adapter._signed("GET", "/sapi/v1/bnbBurn", {})["spotBNBBurn"] is True
    assert adapter._signed("POST", "/sapi/v1/bnbBurn", {"spotBNBBurn": "false"}) == {"spotBNBBurn": False,
                                                                                     "interestBNBBurn": False}
    assert venue.server.accounts.binance["bnb-key"].bnb_burn is False


def test_a_live_pair_with_bnb_fees_books_exactly_what_the_venue_charged(state, venue):
    ads = live_adapters(venue)
    assert reconcile(state, ads)["ok"]  # an empty ledger adopts the venues' balances, BNB included
    bid, ask = ticker(venue, "BNBUSDT")
    bnb = (bid + ask) / 2
    btc_ask = ticker(venue, "BTCUSDT")[1]
    upbit_bid = D(str(requests.get(f"{venue.server.upbit_url}/v1/orderbook", params={"markets": "KRW-BTC"},
                                   timeout=5).json()[0]["orderbook_units"][0]["bid_price"]))
    fees = Fees(upbit=D("0.0005"), binance=D("0.00075"), binance_in_bnb=True, binance_undiscounted=D("0.001"))
    executor = PairExecutor(state, fees, ads, mode="live")
    pair = Pair.objects.create(symbol="BTC", buy_exchange="binance", sell_exchange="upbit", mode="live")
    pair = executor.execute(pair, PairRequest("BTC", "binance", "upbit", D("0.01"), btc_ask, upbit_bid, D("1400"),
                                              D("0.00001")))
    assert (pair.state, pair.stage) == ("filled", "closed")
    fills = list(Fill.objects.filter(order__pair=pair, order__exchange="binance"))
    assert fills and all(f.fee_asset == "BNB" for f in fills)
    for fill in fills:
        # 0.075 % of the fill's USDT notional in BNB at the venue's BNBUSDT mid, to 8 decimals ...
        assert fill.fee == (fill.price * fill.quantity * D("0.00075") / bnb).quantize(D("1e-8"))
        # ... valued at BNB's price (read from the venue: no BNB in the hot state), never at BTC's.
        assert fill.fee_krw == (fill.fee * bnb * D("1400")).quantize(D("1e-8"))
        assert fill.fee_note == f"BNB at {bnb.normalize():f} USDT (REST ticker)"
    assert D("500") < sum(f.fee_krw for f in fills) < D("2000")  # ~1,000 KRW, not ~150,000
    account = venue.server.accounts.binance["bnb-key"]
    for asset in ("BNB", "BTC", "USDT"):
        assert ledger.balance("binance", asset) == account.balances[asset], asset
    assert account.balances["BTC"] == D("1.01")  # the coin arrives whole: the fee came out of BNB
    assert reconcile(state, ads)["ok"]
    # A look-up (myTrades) reports the same commission asset, so a resumed pair books the same.
    buy = Order.objects.get(pair=pair, exchange="binance")
    looked_up = ads["binance"].lookup("BTC", buy.client_order_id)
    assert {f.fee_asset for f in looked_up.fills} == {"BNB"}
    assert sum(f.fee for f in looked_up.fills) == sum(f.fee for f in fills)


def test_the_venue_charges_the_asset_received_when_bnb_runs_out(state, venue):
    venue.server.accounts.binance["bnb-key"].balances["BNB"] = D(0)
    ads = live_adapters(venue)
    limit = ads["binance"].limit_price("BTC", "buy", ticker(venue, "BTCUSDT")[1] * D("1.001"))
    report = ads["binance"].submit(LegOrder("BTC", "buy", D("0.01"), limit, "kimpbnbempty1"))
    assert report.executed == D("0.01") and {f.fee_asset for f in report.fills} == {"BTC"}
    assert report.fee == D("0.00001")
