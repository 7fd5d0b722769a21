"""Money in the database: Decimal in Python, integer 1e-8 units in the column.

SQLite gives DECIMAL columns REAL affinity, so sums drift; integer units are exact on SQLite and
PostgreSQL alike, and `F("amount") + units` updates stay atomic in SQL.
"""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models

PLACES = 8
QUANTUM = Decimal(1).scaleb(-PLACES)
MAX_UNITS = 2**63 - 1  # a signed 64-bit column: about 92 billion in whole units


class MoneyOverflow(ValueError):
    """An amount (or a balance after a move) beyond what a money column holds exactly."""


def to_units(value) -> int:
    """Decimal -> integer units; refuses anything finer than 1e-8 rather than rounding silently."""
    if isinstance(value, float):
        raise TypeError(f"money is never a float ({value!r}); pass a Decimal or a string")
    amount = Decimal(value)
    if not amount.is_finite() or amount.adjusted() > 30:
        raise MoneyOverflow(f"{value} is not a finite amount a money column holds")
    units = amount.scaleb(PLACES)
    if units != units.to_integral_value():
        raise ValueError(f"{value} has more than {PLACES} decimal places; quantize it first")
    if abs(units) > MAX_UNITS:
        raise MoneyOverflow(f"{value} is beyond what a money column holds (±{from_units(MAX_UNITS)})")
    return int(units)


def from_units(units) -> Decimal:
    if isinstance(units, float):
        # SQLite turns an integer that overflowed in SQL arithmetic into REAL: never read it as money.
        raise MoneyOverflow(f"a money column holds a float ({units!r}): it overflowed and cannot be trusted")
    return Decimal(units).scaleb(-PLACES)


def money(value) -> Decimal:
    """Round to the ledger's precision (banker's rounding)."""
    return Decimal(value).quantize(QUANTUM)


class MoneyField(models.BigIntegerField):
    description = "Decimal amount stored as integer 1e-8 units"

    def from_db_value(self, value, expression, connection):
        return None if value is None else from_units(value)

    def to_python(self, value):
        if value is None or isinstance(value, Decimal):
            return value
        try:
            amount = Decimal(str(value))
        except ArithmeticError:
            raise ValidationError(f"{value!r} is not a decimal amount") from None
        try:
            to_units(amount)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        return amount

    def get_prep_value(self, value):
        if value is None:
            return None
        return to_units(value)

    def formfield(self, **kwargs):
        from django import forms

        return forms.DecimalField(decimal_places=PLACES, **kwargs)
