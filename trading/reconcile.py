"""Startup reconciliation: the venues' balances and open orders against the ledger.

Live trading waits until they agree. The first run on an empty ledger adopts the venues'
balances as deposits. Open orders we placed (known client ids) are adopted; any other open order
is an orphan and is cancelled. Every finding is logged and kept in Redis for /health.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.db import transaction

from . import ledger
from .models import LedgerEntry, Order

log = logging.getLogger(__name__)
# The ledger keeps 1e-8; an exchange may keep a fee to more places. Differences below this are rounding.
TOLERANCE = Decimal("0.0001")
QUOTE = {"upbit": "KRW", "binance": "USDT"}


def reconcile(state, adapters: dict) -> dict:
    """Compare, adopt or cancel, record the result; returns {"ok", "differences", "cancelled", "adopted"}."""
    differences, cancelled, adopted = [], [], []
    exchange_balances = {}
    for venue, adapter in adapters.items():
        exchange_balances[venue] = {asset: free + locked for asset, (free, locked) in adapter.balances().items()}
        for order in adapter.open_orders():
            client_id = order.get("clientOrderId") or order.get("identifier") or ""
            if Order.objects.filter(client_order_id=client_id).exists():
                adopted.append(f"{venue}:{client_id}")
                continue
            if venue == "binance":
                adapter.cancel_order(order["symbol"], client_id)
            else:
                adapter.cancel_by_uuid(order["uuid"])
            cancelled.append(f"{venue}:{client_id or order.get('uuid')}")
            log.warning("reconcile: cancelled orphan order %s on %s", client_id or order.get("uuid"), venue)
        # Cancelling released locked funds; read again so the comparison sees the settled state.
        if cancelled:
            exchange_balances[venue] = {asset: free + locked for asset, (free, locked) in adapter.balances().items()}
    if not LedgerEntry.objects.exists():
        with transaction.atomic():
            for venue, balances in exchange_balances.items():
                for asset, amount in balances.items():
                    if amount:
                        ledger.post(venue, asset, amount, LedgerEntry.Kind.DEPOSIT)
        log.info("reconcile: empty ledger; adopted the venues' balances as deposits")
    ours = ledger.balances()
    for venue, balances in exchange_balances.items():
        assets = set(balances) | {a for v, a in ours if v == venue}
        for asset in sorted(assets):
            theirs, mine = balances.get(asset, Decimal(0)), ours.get((venue, asset), Decimal(0))
            if abs(theirs - mine) > TOLERANCE:
                differences.append(f"{venue} {asset}: exchange {theirs} vs ledger {mine}")
    report = {"ok": not differences, "differences": differences, "cancelled": cancelled, "adopted": adopted}
    state.set_reconciliation(report)
    if differences:
        log.error("reconcile: ledger and venues disagree; live trading refused: %s", "; ".join(differences))
    return report
