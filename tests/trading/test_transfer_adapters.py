"""The adapters' venue-neutral transfer calls against the venue over real HTTP.

Networks, deposit addresses and allow-lists from each venue's API; round trips Binance -> Upbit and
Upbit -> Binance through `withdraw` / `lookup_withdrawal` / `deposits` that move the venue's balances
with the fee and the delay; refusals reported FAILED with nothing done; a withdrawal whose answer is
lost found by look-up and never sent twice; one that never reached the venue ABSENT only after the
bound; lost deposits, travel-rule holds and failures mapped to TransferStatus.
"""

import time
import uuid
from decimal import Decimal as D

import pytest
import requests

from tests.conftest import start_venue
from tests.exchange_fixtures import load
from trading.exchanges.binance import BinanceAdapter
from trading.exchanges.types import TransferStatus, WithdrawalRequest
from trading.exchanges.upbit import UpbitAdapter

SECRET = "a" * 64
BN, UP = "bn-adapter", "up-adapter"
DELAY = 0.6
FAST = 0.3  # client timeout when a fault holds the answer


@pytest.fixture(scope="module")
def venue():
    thread = start_venue(5,
                         ("binance", BN, SECRET, {"BTC": "2", "USDT": "10000", "XRP": "5000"}),
                         ("upbit", UP, SECRET, {"BTC": "2", "KRW": "100000000", "XRP": "5000", "USDT": "5000"}),
                         drive=False)
    yield thread
    thread.stop()


@pytest.fixture(autouse=True)
def clean(venue):
    venue.call(venue.server.control, None, "clear")
    venue.call(venue.server.control, None, "transfer_delay", seconds=DELAY)
    yield
    venue.call(venue.server.control, None, "clear")
    deadline = time.monotonic() + 10
    while venue.call(venue.server.transfers.summary)["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)


def bn(venue, **kwargs) -> BinanceAdapter:
    return BinanceAdapter(venue.server.binance_url, BN, SECRET, **kwargs)


def up(venue, **kwargs) -> UpbitAdapter:
    return UpbitAdapter(venue.server.upbit_url, UP, SECRET, **kwargs)


def control(venue, exchange, **body):
    url = venue.server.binance_url if exchange == "binance" else venue.server.upbit_url
    response = requests.post(f"{url}/_venue/control", json=body, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def held(venue, exchange, asset) -> tuple[D, D]:
    accounts = venue.server.accounts.binance if exchange == "binance" else venue.server.accounts.upbit
    key = BN if exchange == "binance" else UP
    return venue.call(lambda: (accounts[key].balances.get(asset, D(0)), accounts[key].locked.get(asset, D(0))))


def withdrawals(venue, exchange, **match) -> list:
    records = venue.call(lambda: list(venue.server.transfers.withdrawals.values()))
    return [w for w in records if w.exchange == exchange and all(getattr(w, k) == v for k, v in match.items())]


def until(check, timeout=6.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def register_binance_address(venue, asset, network):
    target = bn(venue).deposit_address(asset, network)
    control(venue, "upbit", action="register_address", key=UP, asset=asset, network=network, address=target.address,
            tag=target.tag)
    return target


def cid() -> str:
    return f"t{uuid.uuid4().hex[:20]}"


# --- networks and addresses -----------------------------------------------------------------------------
def test_networks_come_from_each_venues_api(venue):
    usdt = {n.network: n for n in bn(venue).networks("USDT")}
    assert set(usdt) == {"TRX", "ETH"}
    trx = usdt["TRX"]
    assert (trx.venue, trx.withdraw_fee, trx.withdraw_min, trx.withdraw_step, trx.confirmations) == ("binance", D("1"), D("10"), D("0.000001"), 1)
    assert trx.withdraw_enabled and trx.deposit_enabled
    assert bn(venue).networks("NOPE") == []
    btc = up(venue).networks("BTC")
    assert len(btc) == 1
    assert (btc[0].network, btc[0].withdraw_fee, btc[0].withdraw_min, btc[0].withdraw_step, btc[0].confirmations) == \
        ("BTC", D("0.0008"), D("0.00001"), D("0.00000001"), 1)
    control(venue, "upbit", action="network", asset="BTC", withdraw=False)
    control(venue, "binance", action="network", asset="USDT", network="ETH", deposit=False)
    assert not up(venue).networks("BTC")[0].withdraw_enabled and up(venue).networks("BTC")[0].deposit_enabled
    eth = next(n for n in bn(venue).networks("USDT") if n.network == "ETH")
    assert eth.withdraw_enabled and not eth.deposit_enabled


def test_deposit_addresses_and_the_allow_list(venue):
    binance_xrp = bn(venue).deposit_address("XRP", "XRP")
    assert binance_xrp.address.startswith("r") and binance_xrp.tag.isdigit()
    assert bn(venue).deposit_address("XRP", "XRP") == binance_xrp
    upbit_btc = up(venue).deposit_address("BTC", "BTC")  # generated, then polled until made
    assert (upbit_btc.venue, upbit_btc.asset, upbit_btc.network, upbit_btc.tag) == ("upbit", "BTC", "BTC", "")
    assert up(venue).deposit_address("BTC", "BTC") == upbit_btc
    assert up(venue).deposit_address("XRP", "XRP").tag.isdigit()
    assert bn(venue).registered_addresses("XRP") == []
    assert up(venue).registered_addresses("XRP") == []
    register_binance_address(venue, "XRP", "XRP")
    listed = up(venue).registered_addresses("XRP")
    assert [(a.address, a.tag, a.network) for a in listed] == [(binance_xrp.address, binance_xrp.tag, "XRP")]


# --- round trips ------------------------------------------------------------------------------------
def test_binance_to_upbit_round_trip_with_the_fee_and_the_delay(venue):
    binance, upbit = bn(venue), up(venue)
    target = upbit.deposit_address("BTC", "BTC")
    bn_before, up_before = held(venue, "binance", "BTC"), held(venue, "upbit", "BTC")
    since = int(time.time() * 1000)
    client_id = cid()
    report = binance.withdraw(WithdrawalRequest("BTC", "BTC", D("0.01"), target.address, "", client_id))
    assert report.status is TransferStatus.PENDING, report
    assert (report.amount, report.fee, report.client_id, len(report.transfer_id)) == (D("0.01"), D("0.0002"), client_id, 32)
    assert held(venue, "binance", "BTC") == (bn_before[0] - D("0.0102"), bn_before[1] + D("0.0102"))
    found = binance.lookup_withdrawal("BTC", client_id)
    assert found.transfer_id == report.transfer_id and found.status in (TransferStatus.PENDING, TransferStatus.DONE)
    done = until(lambda: (r := binance.lookup_withdrawal("BTC", client_id, transfer_id=report.transfer_id)).status is TransferStatus.DONE and r)
    assert (done.amount, done.fee, done.address) == (D("0.01"), D("0.0002"), target.address) and done.txid
    arriving = upbit.deposits("BTC", since)
    assert [(d.status, d.amount, d.txid) for d in arriving] == [(TransferStatus.PENDING, D("0.01"), done.txid)]
    assert held(venue, "upbit", "BTC") == up_before
    credited = until(lambda: [d for d in upbit.deposits("BTC", since) if d.status is TransferStatus.DONE])
    assert [(d.amount, d.txid, d.kind, d.venue) for d in credited] == [(D("0.01"), done.txid, "deposit", "upbit")]
    assert held(venue, "upbit", "BTC") == (up_before[0] + D("0.01"), up_before[1])
    assert held(venue, "binance", "BTC") == (bn_before[0] - D("0.0102"), bn_before[1])


def test_upbit_to_binance_round_trip_with_the_fee_on_top(venue):
    binance, upbit = bn(venue), up(venue)
    target = register_binance_address(venue, "XRP", "XRP")
    up_before, bn_before = held(venue, "upbit", "XRP"), held(venue, "binance", "XRP")
    since = int(time.time() * 1000)
    sent_at = time.time()
    report = upbit.withdraw(WithdrawalRequest("XRP", "XRP", D("40"), target.address, target.tag, "ours-1"))
    assert report.status is TransferStatus.PENDING, report
    assert (report.amount, report.fee, report.client_id, report.network) == (D("40"), D("1"), "ours-1", "XRP")
    assert held(venue, "upbit", "XRP") == (up_before[0] - D("41"), up_before[1] + D("41"))
    # Found by its uuid, and (Upbit keeps no client id) by amount after the send.
    assert upbit.lookup_withdrawal("XRP", "ours-1", transfer_id=report.transfer_id).transfer_id == report.transfer_id
    assert upbit.lookup_withdrawal("XRP", "ours-1", sent_at=sent_at, amount=D("40")).transfer_id == report.transfer_id
    statuses = set()

    def settled():
        deposits = binance.deposits("XRP", since)
        statuses.update(d.status for d in deposits)
        return deposits if deposits and deposits[0].status is TransferStatus.DONE else None

    deposits = until(settled)
    assert TransferStatus.HELD in statuses  # status 6: credited, locked
    assert [(d.amount, d.address) for d in deposits] == [(D("40"), target.address)]
    assert upbit.lookup_withdrawal("XRP", "", transfer_id=report.transfer_id).txid == deposits[0].txid
    assert held(venue, "binance", "XRP") == (bn_before[0] + D("40"), bn_before[1])
    assert held(venue, "upbit", "XRP") == (up_before[0] - D("41"), up_before[1])


# --- refusals --------------------------------------------------------------------------------------
def test_refusals_are_failed_and_nothing_happened(venue):
    binance, upbit = bn(venue), up(venue)
    upbit_btc = upbit.deposit_address("BTC", "BTC")
    before = held(venue, "binance", "BTC"), held(venue, "upbit", "BTC"), len(withdrawals(venue, "binance")), len(withdrawals(venue, "upbit"))
    below = binance.withdraw(WithdrawalRequest("BTC", "BTC", D("0.0005"), upbit_btc.address, "", cid()))
    assert below.status is TransferStatus.FAILED and "minimum pick-up quantity" in below.error
    illegal = binance.withdraw(WithdrawalRequest("BTC", "BTC", D("0.01"), "0x" + "1" * 40, "", cid()))
    assert illegal.status is TransferStatus.FAILED and "Illegal address" in illegal.error
    no_id = binance.withdraw(WithdrawalRequest("BTC", "BTC", D("0.01"), upbit_btc.address, "", ""))
    assert no_id.status is TransferStatus.FAILED and no_id.error.startswith("not sent:")
    unregistered = upbit.withdraw(WithdrawalRequest("BTC", "BTC", D("0.01"), "bc1q" + "q" * 38, "", "u1"))
    assert unregistered.status is TransferStatus.FAILED and "withdraw_address_not_registered" in unregistered.error
    control(venue, "binance", action="network", asset="BTC", withdraw=False)
    suspended = binance.withdraw(WithdrawalRequest("BTC", "BTC", D("0.01"), upbit_btc.address, "", cid()))
    assert suspended.status is TransferStatus.FAILED and "not open for withdrawal" in suspended.error
    control(venue, "binance", action="fault", kind="refuse_429", method="POST", path="/sapi/v1/capital/withdraw/apply")
    control(venue, "binance", action="network", asset="BTC", withdraw=True)
    limited = binance.withdraw(WithdrawalRequest("BTC", "BTC", D("0.01"), upbit_btc.address, "", cid()))
    assert limited.status is TransferStatus.FAILED and "RateLimited" in limited.error  # refused: not retried, not resent
    after = held(venue, "binance", "BTC"), held(venue, "upbit", "BTC"), len(withdrawals(venue, "binance")), len(withdrawals(venue, "upbit"))
    assert after == before


# --- unknown outcomes ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["delay_after", "reset_after", "error_5xx_after", "html_after"])
def test_binance_withdrawal_whose_answer_is_lost_is_found_never_doubled(venue, kind):
    target = up(venue).deposit_address("BTC", "BTC")
    control(venue, "binance", action="fault", kind=kind, method="POST", path="/sapi/v1/capital/withdraw/apply", seconds=0.6)
    before = held(venue, "binance", "BTC")
    client_id = cid()
    report = bn(venue, timeout=FAST).withdraw(WithdrawalRequest("BTC", "BTC", D("0.003"), target.address, "", client_id))
    assert report.status in (TransferStatus.PENDING, TransferStatus.DONE), report
    assert report.transfer_id and report.client_id == client_id and report.amount == D("0.003")
    assert len(withdrawals(venue, "binance", client_id=client_id)) == 1
    assert held(venue, "binance", "BTC")[0] == before[0] - D("0.0032")  # debited once, fee included


@pytest.mark.parametrize("kind", ["delay_after", "reset_after", "error_5xx_after"])
def test_upbit_withdrawal_whose_answer_is_lost_is_found_by_amount_never_doubled(venue, kind):
    target = register_binance_address(venue, "BTC", "BTC")
    control(venue, "upbit", action="fault", kind=kind, method="POST", path="/v1/withdraws/coin", seconds=0.6)
    before = held(venue, "upbit", "BTC")
    amount = D("0.0101") + D(uuid.uuid4().int % 1000) / D(10**8)  # unique among the recent ones
    report = up(venue, timeout=FAST).withdraw(WithdrawalRequest("BTC", "BTC", amount, target.address, "", "u-lost"))
    assert report.status in (TransferStatus.PENDING, TransferStatus.DONE), report
    assert report.transfer_id and report.client_id == "u-lost" and report.fee == D("0.0008")
    assert [w.id for w in withdrawals(venue, "upbit", amount=amount)] == [report.transfer_id]
    assert held(venue, "upbit", "BTC")[0] == before[0] - amount - D("0.0008")  # debited once, fee on top


def test_binance_withdrawal_that_never_reached_the_venue_is_absent_after_recv_window(venue):
    target = up(venue).deposit_address("BTC", "BTC")
    control(venue, "binance", action="fault", kind="timeout_before", method="POST", path="/sapi/v1/capital/withdraw/apply",
            seconds=0.5)
    before = held(venue, "binance", "BTC")
    client_id = cid()
    started = time.time()
    report = bn(venue, timeout=FAST, recv_window=1000).withdraw(WithdrawalRequest("BTC", "BTC", D("0.003"), target.address, "", client_id))
    assert report.status is TransferStatus.ABSENT, report
    assert time.time() - started >= 2.0  # recvWindow (1 s) + 1 s: only then can it no longer arrive
    assert withdrawals(venue, "binance", client_id=client_id) == [] and held(venue, "binance", "BTC") == before


def test_upbit_withdrawal_that_never_reached_the_venue_is_unknown_then_absent_after_the_bound(venue):
    target = register_binance_address(venue, "BTC", "BTC")
    control(venue, "upbit", action="fault", kind="timeout_before", method="POST", path="/v1/withdraws/coin", seconds=0.5)
    before = held(venue, "upbit", "BTC")
    adapter = up(venue, timeout=FAST, lookup_budget_s=0.8)
    adapter.transfer_absent_after_s = 2.5
    sent_at = time.time()
    report = adapter.withdraw(WithdrawalRequest("BTC", "BTC", D("0.0123"), target.address, "", "u-gone"))
    assert report.status is TransferStatus.UNKNOWN, report  # too early to tell: never resent
    assert "unaccounted for" in report.error
    time.sleep(max(0.0, sent_at + 2.6 - time.time()))
    later = adapter.lookup_withdrawal("BTC", "u-gone", sent_at=sent_at, amount=D("0.0123"), address=target.address)
    assert later.status is TransferStatus.ABSENT and later.address == target.address
    assert withdrawals(venue, "upbit", amount=D("0.0123")) == [] and held(venue, "upbit", "BTC") == before


def test_lookups_that_cannot_decide_stay_unknown(venue):
    target = register_binance_address(venue, "XRP", "XRP")
    upbit = up(venue, lookup_budget_s=0.5)
    upbit.transfer_absent_after_s = 0.1
    sent_at = time.time()
    for _ in range(2):
        assert upbit.withdraw(WithdrawalRequest("XRP", "XRP", D("7"), target.address, target.tag, "same")).status is TransferStatus.PENDING
    time.sleep(0.2)
    twins = upbit.lookup_withdrawal("XRP", "same", sent_at=sent_at, amount=D("7"))
    assert twins.status is TransferStatus.UNKNOWN and "cannot tell which" in twins.error
    # A uuid the venue gave is never called absent: not found is lag.
    ghost = upbit.lookup_withdrawal("XRP", "", transfer_id=str(uuid.uuid4()), sent_at=sent_at - 60)
    assert ghost.status is TransferStatus.UNKNOWN
    binance = bn(venue, lookup_budget_s=0.5)
    assert binance.lookup_withdrawal("XRP", "", sent_at=sent_at).status is TransferStatus.UNKNOWN  # nothing to look up by


# --- holds, losses, failures -----------------------------------------------------------------------
def test_lost_deposit_leaves_the_withdrawal_done_and_no_deposit(venue):
    binance, upbit = bn(venue), up(venue)
    target = upbit.deposit_address("BTC", "BTC")
    control(venue, "binance", action="lose_deposit", on=True)
    up_before = held(venue, "upbit", "BTC")
    since = int(time.time() * 1000)
    client_id = cid()
    report = binance.withdraw(WithdrawalRequest("BTC", "BTC", D("0.004"), target.address, "", client_id))
    done = until(lambda: (r := binance.lookup_withdrawal("BTC", client_id)).status is TransferStatus.DONE and r)
    assert done.transfer_id == report.transfer_id and done.txid
    time.sleep(DELAY)
    assert upbit.deposits("BTC", since) == [] and held(venue, "upbit", "BTC") == up_before


def test_travel_rule_hold_is_held_then_done(venue):
    binance, upbit = bn(venue), up(venue)
    target = upbit.deposit_address("USDT", "TRX")
    control(venue, "upbit", action="travel_rule_hold", on=True)
    since = int(time.time() * 1000)
    binance.withdraw(WithdrawalRequest("USDT", "TRX", D("20"), target.address, "", cid()))
    deposit = until(lambda: next((d for d in upbit.deposits("USDT", since) if d.status is TransferStatus.HELD), None))
    assert deposit.error == "state TRAVEL_RULE_SUSPECTED" and deposit.amount == D("20")
    control(venue, "upbit", action="travel_rule_release")
    assert [d.status for d in upbit.deposits("USDT", since)] == [TransferStatus.DONE]


def test_a_failed_withdrawal_is_reported_failed(venue):
    control(venue, "binance", action="transfer_delay", seconds=30)
    target = up(venue).deposit_address("BTC", "BTC")
    binance = bn(venue)
    client_id = cid()
    report = binance.withdraw(WithdrawalRequest("BTC", "BTC", D("0.005"), target.address, "", client_id))
    control(venue, "binance", action="fail_withdrawal", id=report.transfer_id, reason="The address is not valid.")
    failed = binance.lookup_withdrawal("BTC", client_id)
    assert failed.status is TransferStatus.FAILED and failed.error == "The address is not valid."


# --- the venues' recorded payloads -----------------------------------------------------------------
def test_status_mapping_of_the_recorded_payloads():
    binance, upbit = BinanceAdapter("http://x", "k", "s"), UpbitAdapter("http://x", "k", "s")
    history = binance._withdrawal_report(load("binance_rest_capital_withdraw_history_docexample")[0])
    assert (history.status, history.amount, history.fee, history.client_id) == (TransferStatus.DONE, D("8.91"), D("0.004"), "WITHDRAWtest123")
    stringly = binance._withdrawal_report(load("binance_rest_capital_withdraw_history_ccxtstatic")[0])
    assert (stringly.status, stringly.amount, stringly.fee) == (TransferStatus.DONE, D("9"), D("1"))
    deposit = binance._deposit_report(load("binance_rest_capital_deposit_hisrec_docexample")[0])
    assert (deposit.status, deposit.amount, deposit.kind) == (TransferStatus.DONE, D("0.001"), "deposit")
    waiting = upbit._transfer(load("upbit_rest_withdraws_coin_docexample"), "withdrawal")
    assert (waiting.status, waiting.amount, waiting.network) == (TransferStatus.PENDING, D("13.0"), "TRX")
    done = upbit._transfer(load("upbit_rest_withdraw_ccxtcomment"), "withdrawal")
    assert (done.status, done.amount, done.fee) == (TransferStatus.DONE, D("35.22344"), D("0.5"))
    legacy = upbit._transfer(load("upbit_rest_withdraws_coin_legacydoc"), "withdrawal")
    assert legacy.status is TransferStatus.PENDING  # "processing", the old lower-case vocabulary
    accepted = upbit._transfer(load("upbit_rest_deposit_ccxtcomment"), "deposit")
    assert (accepted.status, accepted.amount) == (TransferStatus.DONE, D("35.72344"))
