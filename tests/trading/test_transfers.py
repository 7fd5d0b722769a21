"""The transfer lifecycle, its ledger and accounting, its safety, over the venue-neutral interface
(a scripted venue here; tests/trading/test_transfer_adapters.py covers the real dialects)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from liveguard.models import AuditLog, GuardEvent, TransferLimits
from trading import accounting, ledger
from trading.accounting import Marks
from trading.exchanges.types import DepositAddress, NetworkInfo, TransferReport, TransferStatus
from trading.models import LedgerEntry, Transfer
from trading.transfers import TransferRefused, TransferService

pytestmark = pytest.mark.django_db


class ScriptedVenue:
    """Withdrawals and deposits as a venue would report them, scripted by the test."""

    def __init__(self, name, *, fee=D("0.0005"), allow=None):
        self.name, self.fee, self.allow = name, fee, allow
        self.withdrawals: dict[str, TransferReport] = {}
        self.arrived: list[TransferReport] = []
        self.sent = 0
        self.answer = "pending"  # pending | failed | lost (the answer never comes back)

    def networks(self, asset):
        return [NetworkInfo(self.name, asset, "BTC", True, True, self.fee, D("0.001"), D("0.00000001"), 2)]

    def deposit_address(self, asset, network):
        return DepositAddress(self.name, asset, network, f"{self.name}-addr-{asset}")

    def registered_addresses(self, asset):
        return [DepositAddress("binance", asset, "BTC", a) for a in (self.allow or [])]

    def withdraw(self, req):
        self.sent += 1
        report = TransferReport(self.name, req.asset, req.network, "withdrawal",
                                TransferStatus.FAILED if self.answer == "failed" else TransferStatus.PENDING,
                                amount=req.amount, fee=self.fee, transfer_id=f"w{self.sent}", client_id=req.client_id,
                                txid=f"tx{self.sent}", error="refused" if self.answer == "failed" else "")
        if self.answer != "failed":
            self.withdrawals[req.client_id] = report
        if self.answer == "lost":
            raise TimeoutError("read timed out")
        return report

    def lookup_withdrawal(self, asset, client_id, **kwargs):
        return self.withdrawals.get(client_id) or TransferReport(self.name, asset, "BTC", "withdrawal", TransferStatus.ABSENT)

    def deposits(self, asset, since_ms):
        return self.arrived


def setup(enabled=True, **limits):
    t = TransferLimits.load()
    t.withdrawals_enabled = enabled
    t.max_transfer_krw, t.max_daily_transfer_krw = D("100000000"), D("1000000000")
    for k, v in limits.items():
        setattr(t, k, v)
    t.save()
    ledger.deposit("binance", "BTC", D("1"), value_krw=D("140000000"))
    ledger.deposit("upbit", "BTC", D("0.1"), value_krw=D("14300000"))
    binance, upbit = ScriptedVenue("binance"), ScriptedVenue("upbit", allow=["binance-addr-BTC"])
    return TransferService(state=None, venues={"binance": binance, "upbit": upbit}), binance, upbit


def test_a_transfer_moves_coins_through_transit_and_is_never_pnl():
    service, binance, upbit = setup()
    t = service.plan("BTC", "binance", "upbit", D("0.5"), D("140000000"), reason="upbit ran low")
    assert t.address == "upbit-addr-BTC"  # read from the receiver's API
    t = service.send(t)
    assert t.stage == "in_transit" and binance.sent == 1
    assert ledger.balances()[("binance", "BTC")] == D("0.4995")  # 1 - 0.5 - the 0.0005 fee
    assert ledger.balances()[("to_upbit", "BTC")] == D("0.5")
    marks = Marks(D("1400"), {("upbit", "BTC"): D("143000000"), ("binance", "BTC"): D("100000")})
    moving = accounting.valuation(marks)
    # In transit the coins are valued where they go (Upbit): the premium shows as unrealized, never as a flow.
    assert moving.flows == D("154300000")
    assert moving.equity == D("0.4995") * D("140000000") + D("0.5") * D("143000000") + D("0.1") * D("143000000")
    assert moving.realized == -(D("0.0005") * D("140000000"))  # the network fee, at its cost
    assert moving.equity == moving.flows + moving.realized + moving.unrealized
    binance.withdrawals[t.client_id]  # the venue has it once
    upbit.arrived = [TransferReport("upbit", "BTC", "BTC", "deposit", TransferStatus.DONE, amount=D("0.5"), txid="tx1")]
    [arrived] = service.poll()
    assert arrived.stage == "arrived" and ledger.balances()[("upbit", "BTC")] == D("0.6")
    assert ledger.balances()[("to_upbit", "BTC")] == 0
    after = accounting.valuation(marks)
    assert after.equity == moving.equity and after.realized == moving.realized  # arriving changes nothing
    assert AuditLog.objects.filter(model="Transfer").count() == 1


def test_a_withdrawal_whose_answer_is_lost_is_looked_up_never_resent():
    service, binance, _ = setup()
    binance.answer = "lost"
    t = service.send(service.plan("BTC", "binance", "upbit", D("0.5"), D("140000000")))
    assert t.stage == "sent" and not LedgerEntry.objects.filter(transfer=t).exists()  # unknown: nothing booked
    binance.answer = "pending"
    [looked_up] = service.poll()
    assert looked_up.stage == "in_transit" and binance.sent == 1  # found by our client id
    service.poll()
    assert binance.sent == 1


def test_a_refused_withdrawal_books_nothing():
    service, binance, _ = setup()
    binance.answer = "failed"
    t = service.send(service.plan("BTC", "binance", "upbit", D("0.5"), D("140000000")))
    assert t.stage == "failed" and ledger.balances()[("binance", "BTC")] == D("1")


def test_a_transfer_that_never_arrives_is_flagged_with_a_guard_event():
    service, _, _ = setup()
    t = service.send(service.plan("BTC", "binance", "upbit", D("0.5"), D("140000000")))
    Transfer.objects.filter(pk=t.pk).update(expected_by=datetime.now(UTC) - timedelta(seconds=1))
    service.poll()
    t.refresh_from_db()
    assert t.stage == "flagged" and GuardEvent.objects.filter(check_name="transfer_stuck").exists()
    assert ledger.balances()[("to_upbit", "BTC")] == D("0.5")  # still ours, still in transit: nothing lost


@pytest.mark.parametrize("change, words", [
    ({"enabled": False}, "switched off"),
    ({"max_transfer_krw": D("1000000")}, "per-transfer cap"),
    ({"max_daily_transfer_krw": D("1000000")}, "today's cap"),
    ({"max_fee_pct": D("0.01")}, "fee"),
])
def test_every_safety_rule_refuses_before_anything_is_sent(change, words):
    service, binance, _ = setup(**change)
    with pytest.raises(TransferRefused, match=words):
        service.plan("BTC", "binance", "upbit", D("0.5"), D("140000000"))
    assert binance.sent == 0 and not Transfer.objects.exists()


def test_upbit_sends_only_to_an_allow_listed_address():
    service, _, upbit = setup()
    upbit.allow = []
    with pytest.raises(TransferRefused, match="allow-list"):
        service.plan("BTC", "upbit", "binance", D("0.1"), D("143000000"))
    upbit.allow = ["binance-addr-BTC"]
    assert service.plan("BTC", "upbit", "binance", D("0.1"), D("143000000")).address == "binance-addr-BTC"


def test_reconciliation_understands_a_transfer_in_flight(state):
    from trading.reconcile import reconcile

    service, binance, upbit = setup()
    service.send(service.plan("BTC", "binance", "upbit", D("0.5"), D("140000000")))

    class Books:  # what the venues hold: the deposit has already been credited on Upbit
        def __init__(self, name, balances):
            self.name, self._b = name, balances

        def balances(self):
            return self._b

        def open_orders(self):
            return []

    venues = {"binance": Books("binance", {"BTC": D("0.4995")}), "upbit": Books("upbit", {"BTC": D("0.6")})}
    report = reconcile(state, venues)
    assert report["ok"], report["differences"]
    assert any("transfers in flight" in line for line in report["adopted"])
    venues["upbit"] = Books("upbit", {"BTC": D("0.7")})  # more than anything in flight explains
    assert not reconcile(state, venues)["ok"]


def test_the_inventory_loop_buys_cheap_sells_dear_and_the_rebalancer_squares_it(state, market):
    """Inventory strategy: the pair is never closed by a reverse pair; the coins bought on Binance
    travel to Upbit, and their arrival squares the position."""
    from trading import engine, exits, strategies
    from trading.models import CoinStrategy, Position
    from trading.rebalance import rebalance

    CoinStrategy.objects.create(symbol="*", strategy="inventory", transfer_cost_pct=D("0.05"))
    strategies.forget()
    market("BTC", upbit_bids=(("143000000", "0.02"),), upbit_asks=(("143100000", "1"),),
           binance_bids=(("99000", "1"),), binance_asks=(("99010", "1"),))
    assert engine.evaluate_symbol("BTC", state=state) == "executed"
    position = Position.objects.get(symbol="BTC")
    assert position.side == "long_binance"
    # The premium widens past the stop-loss: an inventory position is not closed by a reverse pair.
    market("BTC", upbit_bids=(("160000000", "1"),), upbit_asks=(("160100000", "1"),),
           binance_bids=(("99000", "1"),), binance_asks=(("99010", "1"),))
    assert exits.check_positions(state) == []
    limits = TransferLimits.load()
    limits.withdrawals_enabled, limits.rebalance_below_pct = True, D("49.99")
    limits.max_transfer_krw = limits.max_daily_transfer_krw = D("1e10")
    limits.save()
    binance, upbit = ScriptedVenue("binance", fee=D("0.00001")), ScriptedVenue("upbit")
    service = TransferService(state=state, venues={"binance": binance, "upbit": upbit})
    marks = Marks(D("1400"), {("binance", "BTC"): D("99005"), ("upbit", "BTC"): D("143050000")})
    [t] = rebalance(state, service, marks)
    assert (t.from_venue, t.to_venue, t.stage) == ("binance", "upbit", "in_transit")
    assert state.transfer_cost("BTC") == t.fee / t.amount * 100  # what the strategy adds to its minimum
    upbit.arrived = [TransferReport("upbit", "BTC", "BTC", "deposit", TransferStatus.DONE, amount=t.amount, txid="tx1")]
    service.poll()
    remaining = Position.objects.filter(symbol="BTC").first()
    assert remaining is None or remaining.quantity < position.quantity
    assert rebalance(state, service, marks) == []  # balanced again: nothing more to move
