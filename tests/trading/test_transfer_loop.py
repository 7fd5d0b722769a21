"""Transfers end to end against the venue: the lifecycle over the signed adapters, the ledger and
reconciliation in agreement with the venue after each step, and the faults the issue names."""

from __future__ import annotations

import time
from decimal import Decimal as D

import pytest

from liveguard.models import GuardEvent, TransferLimits
from tests.conftest import start_venue
from trading import ledger
from trading.exchanges.binance import BinanceAdapter
from trading.exchanges.upbit import UpbitAdapter
from trading.models import Transfer
from trading.reconcile import reconcile
from trading.transfers import TransferRefused, TransferService

pytestmark = pytest.mark.django_db
SECRET = "t" * 64
KEY = "loop-key"


@pytest.fixture
def venue():
    thread = start_venue(5,
                         ("binance", KEY, SECRET, {"BTC": "2", "USDT": "10000"}),
                         ("upbit", KEY, SECRET, {"BTC": "2", "KRW": "100000000"}),
                         drive=False)
    thread.call(thread.server.control, None, "transfer_delay", seconds=0.5)
    yield thread
    thread.stop()


@pytest.fixture
def service(venue, state):
    limits = TransferLimits.load()
    limits.withdrawals_enabled = True
    limits.max_transfer_krw = limits.max_daily_transfer_krw = D("1e12")
    limits.save()
    adapters = {"binance": BinanceAdapter(venue.server.binance_url, KEY, SECRET, timeout=0.5, lookup_budget_s=3),
                "upbit": UpbitAdapter(venue.server.upbit_url, KEY, SECRET, timeout=0.5, lookup_budget_s=3)}
    assert reconcile(state, adapters)["ok"]  # the ledger adopts the venue's balances
    return TransferService(state, adapters)


def settle(service, transfer, timeout=8.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service.poll()
        transfer.refresh_from_db()
        if transfer.stage in ("arrived", "failed"):
            return transfer
        time.sleep(0.2)
    return transfer


def venue_balance(venue, exchange, asset):
    account = getattr(venue.server.accounts, exchange)[KEY]
    return account.balances.get(asset, D(0))


def test_coins_go_binance_to_upbit_and_the_ledger_agrees_at_every_step(venue, service, state):
    t = service.send(service.plan("BTC", "binance", "upbit", D("0.5"), D("140000000"), reason="test"))
    assert t.stage == "in_transit"
    assert ledger.balances()[("binance", "BTC")] == venue_balance(venue, "binance", "BTC") == D("2") - t.amount - t.fee
    assert reconcile(state, service.venues)["ok"]  # in flight: understood
    t = settle(service, t)
    assert t.stage == "arrived" and t.amount == D("0.5")
    assert ledger.balances()[("upbit", "BTC")] == venue_balance(venue, "upbit", "BTC") == D("2.5")
    assert ledger.balances().get(("to_upbit", "BTC"), 0) == 0
    report = reconcile(state, service.venues)
    assert report["ok"] and not [a for a in report["adopted"] if "in flight" in a]


def test_coins_go_upbit_to_binance_only_to_an_allow_listed_address(venue, service, state):
    with pytest.raises(TransferRefused, match="allow-list"):
        service.plan("BTC", "upbit", "binance", D("0.5"), D("143000000"))
    ours = service.venues["binance"].deposit_address("BTC", "BTC")  # registered on Upbit's website, by a person
    venue.call(venue.server.control, "upbit", "register_address", key=KEY, asset="BTC", network="BTC",
               address=ours.address, tag=ours.tag)
    t = settle(service, service.send(service.plan("BTC", "upbit", "binance", D("0.5"), D("143000000"))))
    assert t.stage == "arrived"
    assert ledger.balances()[("binance", "BTC")] == venue_balance(venue, "binance", "BTC") == D("2.5")
    assert ledger.balances()[("upbit", "BTC")] == venue_balance(venue, "upbit", "BTC")
    assert reconcile(state, service.venues)["ok"]


def test_a_withdrawal_that_times_out_is_found_never_sent_twice(venue, service, state):
    venue.call(venue.server.control, "binance", "fault", method="POST", path="/sapi/v1/capital/withdraw/apply",
               kind="delay_after", seconds=1.5)
    t = settle(service, service.send(service.plan("BTC", "binance", "upbit", D("0.5"), D("140000000"))))
    assert t.stage == "arrived"
    withdrawals = venue.call(venue.server.transfers.summary)
    assert withdrawals["withdrawals"] == 1, withdrawals
    assert reconcile(state, service.venues)["ok"]


def test_a_deposit_that_never_arrives_is_flagged_and_nothing_is_lost(venue, service, state):
    venue.call(venue.server.control, None, "lose_deposit", on=True)
    t = service.send(service.plan("BTC", "binance", "upbit", D("0.5"), D("140000000")))
    Transfer.objects.filter(pk=t.pk).update(expected_by=t.created_at)  # its time is up
    service.poll()
    t.refresh_from_db()
    assert t.stage == "flagged" and GuardEvent.objects.filter(check_name="transfer_stuck").exists()
    assert ledger.balances()[("to_upbit", "BTC")] == t.amount  # still ours, in transit, said
    assert venue_balance(venue, "binance", "BTC") == ledger.balances()[("binance", "BTC")]


def test_a_suspended_network_is_refused_before_anything_is_sent(venue, service):
    venue.call(venue.server.control, "binance", "network", asset="BTC", withdraw=False, deposit=True)
    with pytest.raises(TransferRefused, match="no BTC network open"):
        service.plan("BTC", "binance", "upbit", D("0.5"), D("140000000"))
    assert not Transfer.objects.exists()


def test_a_persistent_premium_is_harvested_through_rebalancing_cycles(venue, service, state):
    """Inventory strategy in live mode against the venue: pairs buy on Binance and sell on Upbit from
    inventory; the rebalancer sends the coins back to Upbit (fees and delays real on the venue); after
    the last transfer settles the ledger equals the venue, and the PnL is what the pairs earned less
    what the transfers cost, per the accounting model."""
    from datetime import UTC, datetime

    from liveguard.models import GuardLimits
    from trading import accounting, engine, strategies
    from trading.accounting import Marks
    from trading.execution import PairExecutor
    from trading.models import CoinStrategy, Pair
    from trading.rebalance import rebalance
    from trading.state import BookRecord, FxRecord, PriceRecord

    core = venue.server.venue
    venue.call(venue.server.control, None, "premium", symbol="BTC", premium=0.03)  # a persistent 3 % premium
    venue.call(core._sync_from_model, publish=False)  # the venue's own books take it (it is not stepping)
    CoinStrategy.objects.create(symbol="BTC", strategy="inventory", transfer_cost_pct=D("0.05"))
    strategies.forget()
    limits = GuardLimits.load()
    limits.max_position_size = limits.max_total_exposure = D("3000000")
    limits.save()
    t_limits = TransferLimits.load()
    t_limits.rebalance_below_pct, t_limits.max_fee_pct = D("49.9"), D("10")  # small batches: a test, not a plan
    t_limits.save()
    engine.forget_limits()

    def publish_books():
        now = datetime.now(UTC)  # what the feeds would write: the venue's own books
        up, bn, usdt = (venue.call(core.upbit_books["KRW-BTC"].top, 20), venue.call(core.binance_books["BTCUSDT"].top, 20),
                        venue.call(core.upbit_books["KRW-USDT"].top, 1))
        books = [BookRecord("upbit", "BTC", up[0], up[1], now, now), BookRecord("binance", "BTC", bn[0], bn[1], now, now)]
        prices = [PriceRecord(b.exchange, "BTC", b.bids[0][0], b.asks[0][0], (b.bids[0][0] + b.asks[0][0]) / 2, now, now)
                  for b in books]
        bid, ask = usdt[0][0][0], usdt[1][0][0]
        state.write_market(prices, books, [FxRecord("upbit", (bid + ask) / 2, bid, ask, now)])
        state.set_rules("binance", "BTC", {"step_size": "0.00001", "tick_size": "0.01", "min_notional": "5"})
        return Marks((bid + ask) / 2, {(p.exchange, "BTC"): p.mid for p in prices})

    marks = publish_books()
    accounting.value_flows(marks)  # the adopted balances are flows, valued at the first marks seen
    start = accounting.valuation(marks)
    assert start.pnl == 0
    executor = PairExecutor(state, engine.fees(), service.venues, mode="live")
    state.set_reconciliation({"ok": True, "differences": [], "cancelled": [], "adopted": []})
    cycles = 0
    for _ in range(3):
        for _ in range(3):
            publish_books()
            engine.evaluate_symbol("BTC", state=state, executor=executor)
        moved = rebalance(state, service, marks)  # the coins back to Upbit; USDT back to Binance when it runs low
        assert any(t.asset == "BTC" for t in moved)
        assert all(settle(service, t).stage == "arrived" for t in moved)
        cycles += 1
    pairs = list(Pair.objects.filter(stage="closed", quantity__gt=0))
    transfers = list(Transfer.objects.filter(stage="arrived"))
    assert cycles == 3 and len(pairs) >= 3 and len([t for t in transfers if t.asset == "BTC"]) == 3
    assert all((p.buy_exchange, p.sell_exchange) == ("binance", "upbit") for p in pairs)
    # The venue and the ledger agree to the unit, and reconciliation says so.
    for exchange in ("binance", "upbit"):
        for asset, amount in service.venues[exchange].balances().items():
            assert ledger.balances().get((exchange, asset), D(0)) == amount, (exchange, asset)
    assert reconcile(state, service.venues)["ok"]
    end = accounting.valuation(marks)
    assert end.equity == end.flows + end.realized + end.unrealized
    from trading.models import Order

    earned = sum(p.net_pnl for p in pairs)
    transfer_cost = sum(t.fee * marks.of(t.from_venue, t.asset) for t in transfers)
    # USDT bought on Upbit's KRW-USDT book for the quote's way back: what it cost over the mark.
    conversion_cost = sum((o.average_price - marks.fx) * o.filled_quantity + o.fee
                          for o in Order.objects.filter(pair=None, symbol="USDT"))
    transfer_cost += conversion_cost
    pnl = end.pnl - start.pnl
    # What the pairs earned less what the transfers cost; what is left is the premium still carried by
    # the coins of the last pairs not yet sent back (valued per venue) and the BTC fees' mark.
    carried = (ledger.balances()[("binance", "BTC")] - D("2")) * (marks.of("binance", "BTC") - marks.of("upbit", "BTC"))
    assert abs(pnl - (earned - transfer_cost + carried)) < D("0.002") * sum(p.buy_price * p.quantity for p in pairs)
    assert pnl > 0


def test_quote_comes_back_as_usdt_bought_on_upbit_and_sent_to_binance(venue, service, state):
    from datetime import UTC, datetime

    from trading.accounting import Marks
    from trading.rebalance import rebalance
    from trading.state import FxRecord

    core = venue.server.venue
    bids, asks = venue.call(core.upbit_books["KRW-USDT"].top, 1)
    fx = FxRecord("upbit", (bids[0][0] + asks[0][0]) / 2, bids[0][0], asks[0][0], datetime.now(UTC))
    state.set_fx(fx)
    ours = service.venues["binance"].deposit_address("USDT", "TRX")
    venue.call(venue.server.control, "upbit", "register_address", key=KEY, asset="USDT", network="TRX",
               address=ours.address, tag=ours.tag)
    limits = TransferLimits.load()
    limits.rebalance_below_pct = D("20")  # Binance holds 10,000 USDT of ~114 M KRW of quote: about 12 %
    limits.save()
    marks = Marks(fx.rate, {})
    [t] = rebalance(state, service, marks)
    assert (t.asset, t.from_venue, t.to_venue) == ("USDT", "upbit", "binance")
    bought = ledger.balances()[("upbit", "KRW")]
    assert bought < D("100000000")  # KRW spent on Upbit's KRW-USDT book, booked
    t = settle(service, t)
    assert t.stage == "arrived"
    for exchange in ("binance", "upbit"):
        for asset, amount in service.venues[exchange].balances().items():
            assert ledger.balances().get((exchange, asset), D(0)) == amount, (exchange, asset)
    assert reconcile(state, service.venues)["ok"]
    assert rebalance(state, service, marks) == []  # back near half: nothing more to send
