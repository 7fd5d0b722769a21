"""The rebalancer: when a venue's share of a coin falls below the threshold, move coins back.

Run by beat (`trading.tasks.rebalance_inventory`), one asset at a time under its own lock. For
each coin it moves enough from the venue that accumulated it to bring the low venue back to half,
in one batch (a transfer's network fee is fixed, so batching amortises it; a transfer whose fee is
a larger share than `TransferLimits.max_fee_pct` is not made). Nothing is moved while a transfer
of that coin is in flight. The measured cost (fee / amount of the last transfer, in %) is kept in
Redis for the inventory strategy's minimum net spread.

Quote comes back the other way: the inventory strategy spends USDT on Binance and collects KRW on
Upbit, so when Binance's share of the quote's value falls below the threshold, USDT is bought on
Upbit's KRW-USDT book (an IOC limit through the same unknown-outcome discipline as any order,
booked in the ledger) and withdrawn to Binance like a coin. (The other route the issue names —
carrying the value in the coin with the lowest premium — is not automated.)
"""

from __future__ import annotations

import logging
import uuid as uuid_lib
from decimal import Decimal

from django.db import transaction as db_transaction

from liveguard.models import TransferLimits

from . import ledger
from .exchanges.types import LegOrder, LegStatus
from .fields import money
from .models import Order, Transfer
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


def quote_shortfall(balances: dict, fx: Decimal, below_pct: Decimal) -> Decimal:
    """USDT to bring Binance back to half of the quote's value, when its share fell below below_pct."""
    krw = balances.get(("upbit", "KRW"), Decimal(0))
    usdt = balances.get(("binance", "USDT"), Decimal(0)) + balances.get(("to_binance", "USDT"), Decimal(0))
    total = krw + usdt * fx
    if total <= 0 or usdt * fx / total * HUNDRED >= below_pct:
        return Decimal(0)
    return (total / 2 - usdt * fx) / fx


def buy_usdt_on_upbit(state, upbit, quantity: Decimal, fx_ask: Decimal) -> Decimal:
    """Buy USDT with KRW on Upbit (IOC limit 0.2 % over the ask); returns the USDT booked on Upbit."""
    limit = upbit.limit_price("USDT", "buy", fx_ask * Decimal("1.002"))
    order = Order.objects.create(client_order_id=f"kimpq{uuid_lib.uuid4().hex[:24]}", exchange="upbit", symbol="USDT",
                                 side="buy", role=Order.Role.HEDGE, quantity=quantity, price=money(limit))
    report = upbit.submit(LegOrder("USDT", "buy", quantity, limit, order.client_order_id))
    if report.status is not LegStatus.DONE:
        Order.objects.filter(pk=order.pk).update(status=Order.Status.UNKNOWN if report.status is LegStatus.UNKNOWN
                                                 else Order.Status.REJECTED, reason=report.error[:300])
        return Decimal(0)  # unknown: reconciliation will see the KRW and USDT if it happened; never resent
    with db_transaction.atomic():
        for fill in report.fills:
            ledger.record_fill(order, fill.price, fill.quantity, Decimal(0), fee=fill.fee, fee_asset=fill.fee_asset,
                               trade_id=fill.trade_id, quote_rate_krw=Decimal(1))
        Order.objects.filter(pk=order.pk).update(status=Order.Status.FILLED if report.executed >= quantity else
                                                 Order.Status.PARTIALLY_FILLED if report.executed else Order.Status.CANCELED,
                                                 filled_quantity=report.executed, average_price=money(report.average_price),
                                                 fee=money(report.fee), fee_asset=report.fee_asset)
    return report.executed


def rebalance_quote(state, service: TransferService, marks, fx_ask: Decimal, below_pct: Decimal) -> Transfer | None:
    """Send USDT back to Binance when its share of the quote fell below below_pct."""
    if in_flight("USDT").exists():
        return None
    need = quote_shortfall(ledger.balances(), marks.fx, below_pct).quantize(Decimal("0.01"))
    if need <= 0:
        return None
    [info] = [n for n in service.venues["upbit"].networks("USDT") if n.withdraw_enabled][:1] or [None]
    if info is None:
        return None
    held = ledger.balances().get(("upbit", "USDT"), Decimal(0))
    if held < need + info.withdraw_fee:
        held += buy_usdt_on_upbit(state, service.venues["upbit"], need + info.withdraw_fee - held, fx_ask)
    amount = min(need, held - info.withdraw_fee)
    if amount <= 0:
        return None
    t = service.plan("USDT", "upbit", "binance", amount, marks.fx, reason=f"binance quote under {below_pct}%")
    return service.send(t)


def rebalance(state, service: TransferService, marks) -> list[Transfer]:
    """Plan and send the transfers that restore each coin's inventory; returns those sent."""
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
    fx = state.get_fx("upbit")
    if fx is not None and fx.ask and hasattr(service.venues.get("upbit"), "submit"):  # paper transfers trade nothing
        token = state.acquire_lock("rebalance:USDT", 60_000)
        if token is not None:
            try:
                t = rebalance_quote(state, service, marks, fx.ask, limits.rebalance_below_pct)
                if t is not None:
                    sent.append(t)
                    log.info("rebalance: %s USDT upbit -> binance (%s)", t.amount, t.stage)
            except TransferRefused as exc:
                log.warning("quote rebalance refused: %s", exc)
            except Exception:  # noqa: BLE001 — the coins' moves stand; the quote's is tried again next time
                log.exception("quote rebalance failed")
            finally:
                state.release_lock("rebalance:USDT", token)
    return sent

