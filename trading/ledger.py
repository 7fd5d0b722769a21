"""Balances per venue and asset, moved only by ledger entries, in one transaction with each fill."""

from __future__ import annotations

from decimal import Decimal

from django.db import models, transaction
from django.db.models import F, Q, Sum, Value

from .fields import MAX_UNITS, MoneyOverflow, from_units, money, to_units
from .models import Balance, Fill, LedgerEntry, Order

QUOTE = {"upbit": "KRW", "binance": "USDT"}


def post(venue: str, asset: str, amount: Decimal, kind: str, fill: Fill | None = None,
         value_krw: Decimal | None = None) -> LedgerEntry:
    """Add one ledger entry and move the balance by exactly the same amount (call inside a transaction)."""
    entry = LedgerEntry(venue=venue, asset=asset, amount=amount, kind=kind, fill=fill,
                        value_krw=None if value_krw is None else money(value_krw))
    post_many([entry])
    return entry


def post_many(entries: list[LedgerEntry]) -> None:
    """Insert entries in one statement and move each touched balance once (inside a transaction)."""
    totals: dict[tuple[str, str], Decimal] = {}
    for entry in entries:
        entry.amount = money(entry.amount)
        totals[(entry.venue, entry.asset)] = totals.get((entry.venue, entry.asset), Decimal(0)) + entry.amount
    LedgerEntry.objects.bulk_create(entries)
    for (venue, asset), amount in totals.items():
        units = to_units(amount)
        # The move is atomic in SQL and bounded there too: a balance that would leave the column's
        # range is not updated (SQLite would turn it into a REAL; PostgreSQL would raise mid-way).
        in_range = (Q(amount__lte=from_units(MAX_UNITS - units)) if units >= 0
                    else Q(amount__gte=from_units(-MAX_UNITS - units)))
        rows = Balance.objects.filter(venue=venue, asset=asset)
        updated = rows.filter(in_range).update(
            amount=F("amount") + Value(units, output_field=models.BigIntegerField())
        )
        if not updated:
            if rows.exists():
                raise MoneyOverflow(f"{venue} {asset} balance moved by {amount} leaves the money column's range")
            Balance.objects.create(venue=venue, asset=asset, amount=amount)


def lock_balances(keys: list[tuple[str, str]]) -> None:
    """Lock these balance rows in (venue, asset) order, inside the caller's transaction."""
    if not keys:
        return
    query = Q()
    for venue, asset in keys:
        query |= Q(venue=venue, asset=asset)
    list(Balance.objects.select_for_update().filter(query).order_by("venue", "asset").values_list("pk", flat=True))


def record_fill(order: Order, price: Decimal, quantity: Decimal, fee_rate: Decimal, *,
                fee: Decimal | None = None, fee_asset: str | None = None, trade_id: str = "",
                quote_rate_krw: Decimal | None = None, fee_value_krw: Decimal | None = None, fee_note: str = "") -> Fill:
    """Book a fill: the base and quote legs and the fee, charged as each venue charges it.

    Upbit takes its fee in KRW on both sides. Binance takes it in the asset received: base when
    buying, quote when selling. `quote_rate_krw` (KRW per unit of the venue's quote at the fill:
    1 for KRW, the pair's rate for USDT) values each entry for the accounting model; a fee in a
    third asset (BNB) is valued by the caller (`fee_value_krw`, trading/fees.py), and the fill keeps
    that value (`Fill.fee_krw`, empty when it could not be valued) with `fee_note`.
    """
    venue, base, quote = order.exchange, order.symbol, QUOTE[order.exchange]
    notional = money(price * quantity)
    buying = order.side == "buy"
    if fee is not None:  # as the exchange reported it (live fills)
        fee, fee_asset = money(fee), fee_asset or quote
    elif venue == "upbit" or not buying:
        fee_asset, fee = quote, money(notional * fee_rate)
    else:
        fee_asset, fee = base, money(quantity * fee_rate)
    rate = quote_rate_krw if quote_rate_krw is not None else (Decimal(1) if quote == "KRW" else None)
    if not fee:
        fee_value_krw = Decimal(0)
    elif fee_value_krw is None and rate is not None:
        fee_value_krw = fee * rate if fee_asset == quote else fee * price * rate if fee_asset == base else None
    # No savepoint of its own inside the caller's transaction (two round trips a fill): a failure here
    # fails the caller's whole booking, which no caller catches and goes on from.
    with transaction.atomic(savepoint=False):
        fill = Fill.objects.create(order=order, trade_id=trade_id, price=money(price), quantity=quantity, fee=fee,
                                   fee_asset=fee_asset, fee_krw=_money_or_none(fee_value_krw), fee_note=fee_note[:200])
        value = None if rate is None else notional * rate
        entries = [
            LedgerEntry(venue=venue, asset=base, amount=quantity if buying else -quantity, kind=LedgerEntry.Kind.TRADE,
                        fill=fill, value_krw=_money_or_none(value)),
            LedgerEntry(venue=venue, asset=quote, amount=-notional if buying else notional, kind=LedgerEntry.Kind.TRADE,
                        fill=fill, value_krw=_money_or_none(value)),
        ]
        if fee:
            entries.append(LedgerEntry(venue=venue, asset=fee_asset, amount=-fee, kind=LedgerEntry.Kind.FEE, fill=fill,
                                       value_krw=_money_or_none(fee_value_krw)))
        post_many(entries)
    return fill


def balance(venue: str, asset: str) -> Decimal:
    row = Balance.objects.filter(venue=venue, asset=asset).first()
    return row.amount if row else Decimal(0)


def balances() -> dict[tuple[str, str], Decimal]:
    return {(b.venue, b.asset): b.amount for b in Balance.objects.all()}


def ledger_sums() -> dict[tuple[str, str], Decimal]:
    """Balances recomputed from the ledger alone (to check the running balances against)."""
    rows = LedgerEntry.objects.values("venue", "asset").annotate(total=Sum("amount"))
    return {(r["venue"], r["asset"]): r["total"] for r in rows}


def is_funded() -> bool:
    return LedgerEntry.objects.filter(kind=LedgerEntry.Kind.DEPOSIT).exists()


def deposit(venue: str, asset: str, amount: Decimal, value_krw: Decimal | None = None) -> None:
    """A flow in, valued at the marks of the moment (None: valued at the first marks the accounting sees)."""
    with transaction.atomic():
        post(venue, asset, amount, LedgerEntry.Kind.DEPOSIT, value_krw=value_krw)


def withdraw(venue: str, asset: str, amount: Decimal, value_krw: Decimal | None = None) -> None:
    with transaction.atomic():
        post(venue, asset, -amount, LedgerEntry.Kind.WITHDRAWAL, value_krw=value_krw)


def _money_or_none(value: Decimal | None) -> Decimal | None:
    return None if value is None else money(value)
