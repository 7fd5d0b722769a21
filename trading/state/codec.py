"""How the hot state's values are written as Redis strings.

Flat records are hashes of strings and books are JSON (marketdata.records owns both codecs, the
feeds need them); time series are sorted sets whose members are "<epoch seconds>:<value>", so two
equal values at different times stay two members and a value never passes through float.
"""

from __future__ import annotations

from decimal import Decimal

from marketdata.records import (  # noqa: F401
    decode_book,
    decode_record,
    encode_book,
    encode_record,
    encode_sample,
    encode_value,
)
from marketdata.store import text


def decode_sample_value(member: bytes | str) -> Decimal:
    """The value of a time-series member."""
    return Decimal(text(member).split(":", 1)[1])


def decode_samples(members) -> list[tuple[float, Decimal]]:
    """Time-series members as (epoch seconds, value), in the order given."""
    out = []
    for member in members:
        ts, value = text(member).split(":", 1)
        out.append((float(ts), Decimal(value)))
    return out
