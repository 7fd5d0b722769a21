"""Taker matching against the venue's books, and the order records both dialects keep."""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

Level = tuple[Decimal, Decimal]
_ids = itertools.count(1_000_000)


@dataclass
class VenueOrder:
    exchange: str
    market: str
    side: str  # "buy" / "sell"
    kind: str  # limit / market / ...
    quantity: Decimal | None  # base; None for a quote-sized market buy
    price: Decimal | None
    quote_amount: Decimal | None = None  # quote to spend (Upbit "price" order, Binance quoteOrderQty)
    time_in_force: str = "GTC"
    client_id: str = ""
    api_key: str = ""
    order_id: int = field(default_factory=lambda: next(_ids))
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    fills: list[tuple[Decimal, Decimal, Decimal]] = field(default_factory=list)  # price, qty, fee
    status: str = "NEW"  # NEW, PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED
    reserved_fee: Decimal = Decimal(0)  # Upbit: fee set aside for a bid
    locked: Decimal = Decimal(0)  # funds held for the resting remainder

    @property
    def executed(self) -> Decimal:
        return sum((q for _, q, _ in self.fills), Decimal(0))

    @property
    def quote_spent(self) -> Decimal:
        return sum((p * q for p, q, _ in self.fills), Decimal(0))

    @property
    def fee_paid(self) -> Decimal:
        return sum((f for _, _, f in self.fills), Decimal(0))

    @property
    def open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")


def match(levels: list[Level], side: str, quantity: Decimal | None, limit: Decimal | None,
          quote_amount: Decimal | None = None, step: Decimal = Decimal("0.00000001")) -> list[Level]:
    """Slices a taker order takes from the opposite side (best first), within its limit price."""
    out: list[Level] = []
    left_qty = quantity
    left_quote = quote_amount
    for price, size in levels:
        if limit is not None and ((side == "buy" and price > limit) or (side == "sell" and price < limit)):
            break
        take = size
        if left_qty is not None:
            take = min(take, left_qty)
        if left_quote is not None:
            take = min(take, (left_quote / price // step) * step)
        if take <= 0:
            break
        out.append((price, take))
        if left_qty is not None:
            left_qty -= take
            if left_qty <= 0:
                break
        if left_quote is not None:
            left_quote -= take * price
            if left_quote <= 0:
                break
    return out
