"""Moving coins between the venues: withdrawals to our own deposit address on the other venue.

The lifecycle follows the pairs' (trading/execution.py): every stage is committed before the
external call it leads to, a withdrawal whose answer is lost is looked up (by our client id on
Binance, by its fields on Upbit) and never resent, and the ledger moves only on what a venue
reported. In the ledger a transfer is an internal move, never PnL: the sender's balance falls by
the amount and the network fee (a cost) when the sender takes it, the amount sits in a transit
holding (`to_upbit` / `to_binance`, valued at the destination's mark) and reaches the receiver's
balance when its deposit is credited.

Safety: withdrawals are off unless `TransferLimits.withdrawals_enabled` is on AND the withdrawal
keys are configured (separate from the trading keys); the destination is always our own deposit
address read from the other venue's API (never typed in, never taken from a request), checked
against the sender's allow-list where the venue keeps one (Upbit); each transfer and each KST day
is capped in KRW. Every transfer is audited.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from django.db import transaction
from django.db.models import Sum

from liveguard import guard as lg
from liveguard.clock import start_of_trading_day
from liveguard.models import AuditLog, TransferLimits

from . import ledger, positions
from .exchanges.types import TransferReport, TransferStatus, WithdrawalRequest
from .fields import money
from .models import LedgerEntry, Transfer, transit

log = logging.getLogger(__name__)
ZERO = Decimal(0)


class TransferRefused(Exception):
    """The transfer may not be made: the reason is in the message (nothing was sent)."""


def client_id(transfer: Transfer) -> str:
    return f"kimpw{transfer.id.hex[:24]}"


@dataclass
class TransferService:
    """venues: the withdrawal-capable adapters (withdraw keys); readers: adapters that can read
    deposit addresses and deposits with the trading keys (often the same objects)."""

    state: object
    venues: dict
    readers: dict | None = None

    def reader(self, venue: str):
        return (self.readers or self.venues)[venue]

    # --- planning -----------------------------------------------------------------------------
    def plan(self, asset: str, from_venue: str, to_venue: str, amount: Decimal, mark_krw: Decimal, *,
             reason: str = "", user=None) -> Transfer:
        """Check everything and record the transfer (planned): nothing is sent yet."""
        limits = TransferLimits.load()
        if not limits.withdrawals_enabled or not self.venues:
            raise TransferRefused("withdrawals are switched off (TransferLimits) or no withdrawal keys are configured")
        if from_venue == to_venue:
            raise TransferRefused("a transfer goes to the other venue")
        sender, receiver = self.venues[from_venue], self.reader(to_venue)
        network = self._network(sender, receiver, asset)
        info = next(n for n in sender.networks(asset) if n.network == network)
        step = info.withdraw_step or Decimal("0.00000001")
        amount = (amount / step).to_integral_value(rounding=ROUND_FLOOR) * step
        if amount < info.withdraw_min or amount <= 0:
            raise TransferRefused(f"{amount} {asset} is under {from_venue}'s minimum {info.withdraw_min}")
        if info.withdraw_fee / amount * 100 > limits.max_fee_pct:
            raise TransferRefused(f"the {info.withdraw_fee} {asset} fee is over {limits.max_fee_pct}% of {amount}")
        value = money(amount * mark_krw)
        if value > limits.max_transfer_krw:
            raise TransferRefused(f"{value} KRW is over the per-transfer cap {limits.max_transfer_krw}")
        today = (Transfer.objects.filter(created_at__gte=start_of_trading_day())
                 .exclude(stage=Transfer.Stage.FAILED).aggregate(total=Sum("value_krw"))["total"] or ZERO)
        if today + value > limits.max_daily_transfer_krw:
            raise TransferRefused(f"{today} + {value} KRW is over today's cap {limits.max_daily_transfer_krw}")
        destination = receiver.deposit_address(asset, network)  # ours, read from the receiver's API
        if not destination.address:
            raise TransferRefused(f"{to_venue} has no {asset} deposit address yet")
        allowed = sender.registered_addresses(asset)
        if from_venue == "upbit" and not any(a.address == destination.address and a.tag == destination.tag
                                             for a in allowed):
            raise TransferRefused(f"our {to_venue} address is not on Upbit's withdrawal allow-list (register it there)")
        with transaction.atomic():
            t = Transfer(asset=asset, from_venue=from_venue, to_venue=to_venue, network=network, amount=amount,
                         fee=info.withdraw_fee, value_krw=value, address=destination.address, tag=destination.tag,
                         reason=reason[:300])
            t.client_id = client_id(t)
            t.expected_by = datetime.now(UTC) + timedelta(seconds=limits.stuck_after_seconds)
            t.save()
            AuditLog.objects.create(model="Transfer", field=str(t.id), old_value="",
                                    new_value=f"{amount} {asset} {from_venue}->{to_venue} ({reason})"[:300],
                                    user=user if user is not None and getattr(user, "is_authenticated", False) else None)
        return t

    @staticmethod
    def _network(sender, receiver, asset: str) -> str:
        """The cheapest network both venues have open: withdraw here, deposit there."""
        out = {n.network: n.withdraw_fee for n in sender.networks(asset) if n.withdraw_enabled}
        into = {n.network for n in receiver.networks(asset) if n.deposit_enabled}
        common = sorted((fee, network) for network, fee in out.items() if network in into)
        if not common:
            raise TransferRefused(f"no {asset} network open for withdrawal there and deposit here")
        return common[0][1]  # the cheapest

    # --- sending --------------------------------------------------------------------------------
    def send(self, t: Transfer) -> Transfer:
        """planned -> sent (committed) -> the withdrawal -> in_transit | failed | (unknown: stays sent)."""
        Transfer.objects.filter(pk=t.pk, stage=Transfer.Stage.PLANNED).update(stage=Transfer.Stage.SENT,
                                                                          sent_at=datetime.now(UTC))
        t.refresh_from_db()
        if t.stage != Transfer.Stage.SENT or t.withdrawal_id:
            return t  # someone else sent it
        request = WithdrawalRequest(t.asset, t.network, t.amount, t.address, t.tag, t.client_id)
        try:
            report = self.venues[t.from_venue].withdraw(request)
        except Exception as exc:  # noqa: BLE001 — once the request may have left, unknown
            log.exception("withdrawal %s raised", t.client_id)
            report = TransferReport(t.from_venue, t.asset, t.network, "withdrawal", TransferStatus.UNKNOWN,
                                    client_id=t.client_id, error=f"{type(exc).__name__}: {exc}"[:300])
        return self._apply_withdrawal(t, report)

    def _apply_withdrawal(self, t: Transfer, report: TransferReport) -> Transfer:
        if report.status in (TransferStatus.FAILED, TransferStatus.ABSENT):
            Transfer.objects.filter(pk=t.pk).update(stage=Transfer.Stage.FAILED, note=report.error[:300])
        elif report.status in (TransferStatus.PENDING, TransferStatus.DONE, TransferStatus.HELD):
            with transaction.atomic():
                locked = Transfer.objects.select_for_update().get(pk=t.pk)
                if locked.stage in (Transfer.Stage.SENT, Transfer.Stage.FLAGGED) and not LedgerEntry.objects.filter(
                        transfer=locked).exists():
                    fee = report.fee or locked.fee
                    amount = report.amount or locked.amount
                    ledger.post_many([
                        LedgerEntry(venue=locked.from_venue, asset=locked.asset, amount=-amount,
                                    kind=LedgerEntry.Kind.TRANSFER, transfer=locked),
                        LedgerEntry(venue=transit(locked.to_venue), asset=locked.asset, amount=amount,
                                    kind=LedgerEntry.Kind.TRANSFER, transfer=locked),
                        *([LedgerEntry(venue=locked.from_venue, asset=locked.asset, amount=-fee,
                                       kind=LedgerEntry.Kind.FEE, transfer=locked)] if fee else []),
                    ])
                    locked.amount, locked.fee = amount, fee
                locked.stage = Transfer.Stage.IN_TRANSIT
                locked.withdrawal_id = report.transfer_id or locked.withdrawal_id
                locked.txid = report.txid or locked.txid
                locked.save()
        else:
            Transfer.objects.filter(pk=t.pk).update(note=f"withdrawal outcome unknown: {report.error}"[:300])
        t.refresh_from_db()
        return t

    # --- following up ------------------------------------------------------------------------------
    def poll(self) -> list[Transfer]:
        """Settle what can be settled: look up sent withdrawals, credit arrived deposits, flag stuck ones."""
        changed = []
        now = datetime.now(UTC)
        for t in Transfer.objects.filter(stage__in=(Transfer.Stage.SENT, Transfer.Stage.IN_TRANSIT, Transfer.Stage.FLAGGED)):
            before = t.stage
            if t.stage in (Transfer.Stage.SENT, Transfer.Stage.FLAGGED) and not LedgerEntry.objects.filter(transfer=t).exists():
                try:
                    report = self.venues[t.from_venue].lookup_withdrawal(
                        t.asset, t.client_id, transfer_id=t.withdrawal_id,
                        sent_at=t.sent_at.timestamp() if t.sent_at else None, amount=t.amount, address=t.address)
                    t = self._apply_withdrawal(t, report)
                except Exception as exc:  # noqa: BLE001 — asked again next time
                    log.warning("look-up of withdrawal %s failed: %s", t.client_id, exc)
            if t.stage in (Transfer.Stage.IN_TRANSIT, Transfer.Stage.FLAGGED) and LedgerEntry.objects.filter(transfer=t).exists():
                t = self._check_arrival(t)
            if t.stage not in (Transfer.Stage.ARRIVED, Transfer.Stage.FAILED) and t.expected_by and now > t.expected_by:
                self._flag(t, f"not arrived {int((now - t.expected_by).total_seconds())} s after it was expected")
                t.refresh_from_db()
            if t.stage != before:
                changed.append(t)
        return changed

    def _check_arrival(self, t: Transfer) -> Transfer:
        try:
            deposits = self.reader(t.to_venue).deposits(t.asset, int(t.sent_at.timestamp() * 1000) if t.sent_at else 0)
        except Exception as exc:  # noqa: BLE001
            log.warning("deposits of %s on %s not read: %s", t.asset, t.to_venue, exc)
            return t
        taken = set(Transfer.objects.exclude(pk=t.pk).exclude(txid="").values_list("txid", flat=True))
        match = next((d for d in deposits if (t.txid and d.txid == t.txid) or
                      (not t.txid and d.amount == t.amount and d.txid not in taken)), None)
        if match is None:
            return t
        if match.status == TransferStatus.HELD:
            Transfer.objects.filter(pk=t.pk).update(note=f"deposit held on {t.to_venue} ({match.error or 'travel rule'})"[:300])
        elif match.status == TransferStatus.DONE:
            remaining, squared = None, False
            with transaction.atomic():
                locked = Transfer.objects.select_for_update().get(pk=t.pk)
                if locked.stage != Transfer.Stage.ARRIVED:
                    entries = [
                        LedgerEntry(venue=transit(locked.to_venue), asset=locked.asset, amount=-match.amount,
                                    kind=LedgerEntry.Kind.TRANSFER, transfer=locked),
                        LedgerEntry(venue=locked.to_venue, asset=locked.asset, amount=match.amount,
                                    kind=LedgerEntry.Kind.TRANSFER, transfer=locked),
                    ]
                    if match.amount != locked.amount:  # less arrived than left (a deposit fee): a cost, said
                        entries.append(LedgerEntry(venue=transit(locked.to_venue), asset=locked.asset,
                                                   amount=match.amount - locked.amount, kind=LedgerEntry.Kind.FEE,
                                                   transfer=locked))
                    ledger.post_many(entries)
                    locked.stage, locked.arrived_at = Transfer.Stage.ARRIVED, datetime.now(UTC)
                    locked.txid = match.txid or locked.txid
                    locked.save()
                    remaining = positions.square_by_transfer(locked.asset, locked.from_venue, match.amount)
                    squared = True
            if squared and self.state is not None:
                positions.sync_exposure(self.state, t.asset, remaining)
                positions.publish(self.state, remaining, t.asset)
        elif match.status == TransferStatus.FAILED:
            self._flag(t, f"deposit refused on {t.to_venue}: {match.error}")
        t.refresh_from_db()
        return t

    def _flag(self, t: Transfer, reason: str) -> None:
        if t.stage != Transfer.Stage.FLAGGED:
            lg.record(lg.Block("transfer_stuck", f"transfer {t.id} ({t.amount} {t.asset} {t.from_venue}->{t.to_venue}): "
                                                 f"{reason}"), t.asset)
            log.error("transfer %s flagged: %s", t.id, reason)
        Transfer.objects.filter(pk=t.pk).update(stage=Transfer.Stage.FLAGGED, note=reason[:300])


def in_flight(asset: str | None = None):
    query = Transfer.objects.filter(stage__in=(Transfer.Stage.PLANNED, Transfer.Stage.SENT, Transfer.Stage.IN_TRANSIT,
                                               Transfer.Stage.FLAGGED))
    return query.filter(asset=asset) if asset else query
