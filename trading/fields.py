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


def to_units(value) -> int:
    """Decimal -> integer units; refuses anything finer than 1e-8 rather than rounding silently."""
    amount = Decimal(value)
    units = amount.scaleb(PLACES)
    if units != units.to_integral_value():
        raise ValueError(f"{value} has more than {PLACES} decimal places; quantize it first")
    if abs(units) > MAX_UNITS:
        raise ValueError(f"{value} is beyond what a money column holds (±{from_units(MAX_UNITS)})")
    return int(units)


def from_units(units: int) -> Decimal:
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
            return Decimal(str(value))
        except ArithmeticError:
            raise ValidationError(f"{value!r} is not a decimal amount") from None

    def get_prep_value(self, value):
        if value is None:
            return None
        return to_units(value)

    def formfield(self, **kwargs):
        from django import forms

        return forms.DecimalField(decimal_places=PLACES, **kwargs)
