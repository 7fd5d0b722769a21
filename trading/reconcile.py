"""Startup reconciliation: the venues' balances and open orders against the ledger.

Live trading waits until they agree. The first run on an empty ledger adopts the venues'
balances as deposits. Open orders we placed (known client ids) are adopted; any other open order
is an orphan and is cancelled. Every finding is logged and kept in Redis for /health.
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal

from django.db import transaction

from . import ledger
from .accounting import current_marks
from .execution import OPEN_STAGES
from .fields import money
from .models import LedgerEntry, Order, Pair, Transfer

log = logging.getLogger(__name__)


def reconcile(state, adapters: dict) -> dict:
    """Compare, adopt or cancel, record the result; returns {"ok", "differences", "cancelled", "adopted"}.

    Speaks only the venue-neutral interface (trading/exchanges/types.py). Balances must agree to
    the ledger's precision (1e-8) exactly: the ledger books what the venues report, to the unit.
    """
    differences, cancelled, adopted = [], [], []
    exchange_balances = {}
    for venue, adapter in adapters.items():
        for attempt in range(3):  # a read that failed once proves nothing; three in a row are a finding
            try:
                exchange_balances[venue] = _read_venue(venue, adapter, differences, cancelled, adopted)
                break
            except Exception as exc:  # noqa: BLE001 — a venue we cannot read is a venue we cannot trust
                if attempt == 2:
                    differences.append(f"{venue}: could not be read ({type(exc).__name__}: {str(exc)[:120]})")
                else:
                    time.sleep(0.5 * (attempt + 1))
    if len(exchange_balances) < len(adapters):
        return _record(state, differences, cancelled, adopted)
    if not LedgerEntry.objects.exists():
        marks = _marks(state, exchange_balances)
        with transaction.atomic():
            for venue, balances in exchange_balances.items():
                for asset, amount in balances.items():
                    if amount:
                        mark = marks.of(venue, asset) if marks else None
                        # A flow: valued at the marks now, or at the first marks the accounting sees.
                        ledger.post(venue, asset, money(amount), LedgerEntry.Kind.DEPOSIT,
                                    value_krw=None if mark is None else amount * mark)
        log.info("reconcile: empty ledger; adopted the venues' balances as deposits")
    ours = ledger.balances()
    arriving, leaving = _transfers_in_flight()
    for venue, balances in exchange_balances.items():
        assets = set(balances) | {a for v, a in ours if v == venue}
        for asset in sorted(assets):
            theirs, mine = balances.get(asset, Decimal(0)), ours.get((venue, asset), Decimal(0))
            gap = money(theirs) - mine
            if gap == 0:
                continue
            # A transfer the venue has moved and we have not booked yet explains the gap; it is said.
            if 0 < gap <= arriving.get((venue, asset), 0) or 0 < -gap <= leaving.get((venue, asset), 0):
                adopted.append(f"{venue} {asset}: {gap} explained by transfers in flight")
                continue
            differences.append(f"{venue} {asset}: exchange {theirs} vs ledger {mine}")
    open_pairs = Pair.objects.filter(stage__in=OPEN_STAGES, mode="live").count()
    if open_pairs:
        differences.append(f"{open_pairs} live pair(s) not settled yet")
    return _record(state, differences, cancelled, adopted)


def _transfers_in_flight() -> tuple[dict, dict]:
    """What may have reached a venue (in transit to it) or left one (a withdrawal not yet booked)."""
    above, below = {}, {}  # how far a venue may be above / below the ledger because of transfers

    def add(table, key, amount):
        table[key] = table.get(key, 0) + amount

    for t in Transfer.objects.filter(stage__in=(Transfer.Stage.SENT, Transfer.Stage.IN_TRANSIT, Transfer.Stage.FLAGGED)):
        if LedgerEntry.objects.filter(transfer=t).exclude(venue__startswith="to_").filter(venue=t.to_venue).exists():
            continue  # arrived and booked
        if LedgerEntry.objects.filter(transfer=t).exists():
            add(above, (t.from_venue, t.asset), t.amount + t.fee)  # booked as gone, still locked there
            add(above, (t.to_venue, t.asset), t.amount)  # credited there, not yet booked here
        else:
            add(below, (t.from_venue, t.asset), t.amount + t.fee)  # taken there, outcome not yet booked
    return above, below


def _marks(state, exchange_balances: dict):
    fx = state.get_fx("upbit")
    if fx is None:
        return None
    return current_marks(state, fx.rate, [(v, a) for v, b in exchange_balances.items() for a in b])


def _read_venue(venue: str, adapter, differences: list, cancelled: list, adopted: list) -> dict:
    """The venue's balances after cancelling orphans (orders no ledger row knows)."""
    orphans = 0
    for order in adapter.open_orders():
        if order.client_id and Order.objects.filter(client_order_id=order.client_id).exists():
            adopted.append(f"{venue}:{order.client_id}")
            continue
        name = order.client_id or order.exchange_order_id
        try:
            adapter.cancel_open(order)
        except Exception as exc:  # noqa: BLE001 — it may or may not be cancelled: the next run sees
            differences.append(f"{venue}: cancel of orphan {name} unconfirmed ({type(exc).__name__})")
            continue
        orphans += 1
        cancelled.append(f"{venue}:{name}")
        log.warning("reconcile: cancelled orphan order %s on %s", name, venue)
    # Cancelling released locked funds; read again so the comparison sees the settled state.
    return adapter.balances()


def _record(state, differences: list, cancelled: list, adopted: list) -> dict:
    report = {"ok": not differences, "differences": differences, "cancelled": cancelled, "adopted": adopted}
    state.set_reconciliation(report)
    if differences:
        log.error("reconcile: ledger and venues disagree; live trading refused: %s", "; ".join(differences))
    else:
        log.info("reconcile: ledger and venues agree (%d orphan(s) cancelled, %d adopted)", len(cancelled), len(adopted))
    return report
