"""Transfers end to end against the venue: the lifecycle over the signed adapters, the ledger and
reconciliation in agreement with the venue after each step, and the faults the issue names."""

from __future__ import annotations

import time
from decimal import Decimal as D

import pytest

from liveguard.models import GuardEvent, TransferLimits
from marketdata.venue.accounts import Accounts
from marketdata.venue.core import Venue
from marketdata.venue.market import MarketModel
from marketdata.venue.server import VenueServer, VenueThread
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
    accounts = Accounts()
    accounts.add("binance", KEY, SECRET, {"BTC": "2", "USDT": "10000"})
    accounts.add("upbit", KEY, SECRET, {"BTC": "2", "KRW": "100000000"})
    thread = VenueThread(VenueServer(Venue(MarketModel(seed=5)), accounts=accounts, drive=False)).start()
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
