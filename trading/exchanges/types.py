"""The venue-neutral language of order entry: what the executor asks for and what really happened.

Every venue (the signed Upbit and Binance adapters, and the paper venue that fills against the
books in Redis) answers in these types, rebuilt the same way whether the answer came from the
placement, a look-up, or a resume after a crash. Nothing above the adapters parses a venue's
wire format or branches on a venue's name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

ZERO = Decimal(0)


class LegStatus(enum.StrEnum):
    OPEN = "open"  # accepted and still working on the book
    DONE = "done"  # finished (filled, expired, cancelled): `executed` is final, maybe zero
    REJECTED = "rejected"  # refused before it took effect (rules, funds, auth, rate limit): nothing happened
    ABSENT = "absent"  # looked up after the last moment it could have arrived, and not there: never happened
    UNKNOWN = "unknown"  # may exist: the outcome could not be established (yet)

    @property
    def final(self) -> bool:
        return self in (LegStatus.DONE, LegStatus.REJECTED, LegStatus.ABSENT)


@dataclass(frozen=True, slots=True)
class LegOrder:
    """One order: `quantity` of coin `symbol`, a limit in the venue's own quote (None: at market)."""

    symbol: str
    side: str  # "buy" | "sell"
    quantity: Decimal
    limit_price: Decimal | None
    client_id: str
    time_in_force: str = "ioc"


@dataclass(frozen=True, slots=True)
class TradeFill:
    """One execution as the venue reported it; `trade_id` makes booking it idempotent."""

    trade_id: str
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str


@dataclass(frozen=True, slots=True)
class LegReport:
    venue: str
    symbol: str
    side: str
    client_id: str
    status: LegStatus
    quantity: Decimal = ZERO  # as ordered (after the venue's rounding)
    executed: Decimal = ZERO
    quote_amount: Decimal = ZERO  # sum of price x quantity over the fills
    fills: tuple[TradeFill, ...] = ()
    exchange_order_id: str = ""
    error: str = ""

    @property
    def average_price(self) -> Decimal:
        return self.quote_amount / self.executed if self.executed else ZERO

    @property
    def fee(self) -> Decimal:
        return sum((f.fee for f in self.fills), ZERO)

    @property
    def fee_asset(self) -> str:
        return self.fills[0].fee_asset if self.fills else ""

    def consistent(self) -> bool:
        """The fills add up to what the venue says was executed (else the report is not final)."""
        return sum((f.quantity for f in self.fills), ZERO) == self.executed


@dataclass(frozen=True, slots=True)
class OpenOrder:
    venue: str
    symbol: str
    client_id: str
    exchange_order_id: str


@dataclass(frozen=True, slots=True)
class Rules:
    """What one order on a venue may be: steps, minimums, and how prices round."""

    quantity_step: Decimal
    min_quantity: Decimal = ZERO
    min_notional: Decimal = ZERO  # in the venue's quote
    extra: dict = field(default_factory=dict)


class Venue(Protocol):
    """The one interface the executor, resume, reconciliation and exits use."""

    name: str
    quote: str

    def submit(self, order: LegOrder) -> LegReport: ...

    def lookup(self, symbol: str, client_id: str, *, side: str = "") -> LegReport: ...

    def resolve(self, symbol: str, side: str, client_id: str, sent_at: float | None, first_error: str = "", *,
                exists: bool = False) -> LegReport: ...

    def cancel(self, symbol: str, client_id: str) -> LegReport: ...

    def open_orders(self) -> list[OpenOrder]: ...

    def cancel_open(self, order: OpenOrder) -> None: ...

    def balances(self) -> dict[str, Decimal]: ...

    def tradable(self, symbol: str, quantity: Decimal, price: Decimal) -> Decimal: ...

    def limit_price(self, symbol: str, side: str, price: Decimal) -> Decimal: ...
