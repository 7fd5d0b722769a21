"""Money columns neither overflow nor turn into floats, on PostgreSQL and on SQLite (issue 11).

A balance near the column's limit (2**63 - 1 units of 1e-8, about 92 billion whole units) used to be
moved by `F("amount") + units` unchecked: SQLite turned the overflowing integer into a REAL and the
balance read back wrong. Now the move is bounded in SQL and refused with a typed error; the
transaction rolls back, so the ledger and the balance stay equal.
"""

from decimal import Decimal as D

import pytest
from django.db import transaction

from trading import ledger
from trading.fields import MAX_UNITS, MoneyOverflow, from_units, to_units
from trading.models import Balance, LedgerEntry

LIMIT = from_units(MAX_UNITS)  # 92233720368.54775807


def test_to_units_refuses_what_a_column_cannot_hold():
    assert to_units(LIMIT) == MAX_UNITS
    for bad in (LIMIT + D("0.00000001"), -LIMIT - D("0.00000001"), D("1E+999999"), D("Infinity"), D("NaN")):
        with pytest.raises(MoneyOverflow):
            to_units(bad)
    with pytest.raises(TypeError):
        to_units(1.5)
    with pytest.raises(ValueError):
        to_units(D("0.000000001"))


def test_a_float_read_from_a_column_is_refused_not_trusted():
    with pytest.raises(MoneyOverflow):
        from_units(9.223372036854776e18)
    assert from_units(MAX_UNITS) == LIMIT


def _overflow_is_refused_and_nothing_moves():
    near = LIMIT - D("10")
    with transaction.atomic():
        ledger.post("upbit", "KRW", near, "deposit")
    entries = LedgerEntry.objects.count()
    with pytest.raises(MoneyOverflow), transaction.atomic():
        ledger.post("upbit", "KRW", D("20"), "deposit")
    balance = Balance.objects.get(venue="upbit", asset="KRW").amount
    assert isinstance(balance, D) and balance == near
    assert LedgerEntry.objects.count() == entries  # the entry was rolled back with the refused move
    with transaction.atomic():
        ledger.post("upbit", "KRW", D("10"), "deposit")  # exactly to the limit is fine
    assert Balance.objects.get(venue="upbit", asset="KRW").amount == LIMIT
    # and the other way
    with transaction.atomic():
        ledger.post("binance", "USDT", -near, "withdrawal")
    with pytest.raises(MoneyOverflow), transaction.atomic():
        ledger.post("binance", "USDT", D("-20"), "withdrawal")
    assert Balance.objects.get(venue="binance", asset="USDT").amount == -near


@pytest.mark.django_db(transaction=True)
def test_balance_overflow_is_refused_and_nothing_moves():
    _overflow_is_refused_and_nothing_moves()


@pytest.mark.sqlite_smoke
@pytest.mark.django_db(transaction=True)
def test_balance_overflow_is_refused_and_nothing_moves_on_sqlite():
    _overflow_is_refused_and_nothing_moves()
