"""The rebalancer: when a venue's share of a coin falls below the threshold, move coins back.

Run by beat (`trading.tasks.rebalance_inventory`), one asset at a time under its own lock. For
each coin it moves enough from the venue that accumulated it to bring the low venue back to half,
in one batch (a transfer's network fee is fixed, so batching amortises it; a transfer whose fee is
a larger share than `TransferLimits.max_fee_pct` is not made). Nothing is moved while a transfer
of that coin is in flight. The measured cost (fee / amount of the last transfer, in %) is kept in
Redis for the inventory strategy's minimum net spread.

Quote (KRW / USDT) rebalancing — USDT bought on Upbit's KRW-USDT market and withdrawn, or the
coin with the lowest premium as the carrier — is not automated yet: the dashboard's rebalance
suggestions say when quote runs low.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from . import ledger
from .models import Transfer
from .transfers import TransferRefused, TransferService, in_flight

log = logging.getLogger(__name__)
HUNDRED = Decimal(100)
QUOTES = {"KRW", "USDT", "BNB"}


def plan_moves(balances: dict, below_pct: Decimal) -> list[tuple[str, str, str, Decimal]]:
    """(asset, from, to, amount) for every coin whose low venue holds less than below_pct."""
    moves = []
    for asset in sorted({a for (v, a) in balances if v in ("upbit", "binance") and a not in QUOTES}):
        up, bn = balances.get(("upbit", asset), Decimal(0)), balances.get(("binance", asset), Decimal(0))
        up += balances.get(("to_upbit", asset), Decimal(0))  # in transit counts where it is going
        bn += balances.get(("to_binance", asset), Decimal(0))
        total = up + bn
        if total <= 0:
            continue
        low, high, low_amount = ("upbit", "binance", up) if up <= bn else ("binance", "upbit", bn)
        if low_amount / total * HUNDRED < below_pct:
            moves.append((asset, high, low, total / 2 - low_amount))
    return moves


def rebalance(state, service: TransferService, marks) -> list[Transfer]:
    """Plan and send the transfers that restore each coin's inventory; returns those sent."""
    from liveguard.models import TransferLimits

    limits = TransferLimits.load()
    if not limits.withdrawals_enabled:
        return []
    service.poll()
    sent = []
    for asset, source, target, amount in plan_moves(ledger.balances(), limits.rebalance_below_pct):
        token = state.acquire_lock(f"rebalance:{asset}", 60_000)
        if token is None:
            continue
        try:
            if in_flight(asset).exists():
                continue
            mark = marks.of(source, asset)
            if mark is None:
                continue
            t = service.plan(asset, source, target, amount, mark, reason=f"{target} held under {limits.rebalance_below_pct}% "
                                                                          f"of {asset}")
            t = service.send(t)
            sent.append(t)
            if t.amount:
                state.set_transfer_cost(asset, t.fee / t.amount * HUNDRED)
            log.info("rebalance: %s %s %s -> %s (%s)", t.amount, asset, source, target, t.stage)
        except TransferRefused as exc:
            log.warning("rebalance of %s refused: %s", asset, exc)
        finally:
            state.release_lock(f"rebalance:{asset}", token)
    return sent

