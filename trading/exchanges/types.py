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


# --- transfers between the venues (issue 10) -----------------------------------------------------
class TransferStatus(enum.StrEnum):
    PENDING = "pending"  # accepted, not yet on chain / not yet credited
    DONE = "done"  # sent (withdrawal) or credited and usable (deposit)
    HELD = "held"  # a deposit credited but held (travel rule, unlock confirmations)
    FAILED = "failed"  # rejected, cancelled, failed: nothing left the account (or it came back)
    ABSENT = "absent"  # looked up after it could have arrived, and never there
    UNKNOWN = "unknown"  # may exist: to be looked up again (never resent)

    @property
    def final(self) -> bool:
        return self in (TransferStatus.DONE, TransferStatus.FAILED, TransferStatus.ABSENT)


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    """One coin's network on one venue, as the venue publishes it."""

    venue: str
    asset: str
    network: str  # the venue's own id (Binance `network`, Upbit `net_type`)
    withdraw_enabled: bool
    deposit_enabled: bool
    withdraw_fee: Decimal  # in the asset
    withdraw_min: Decimal
    withdraw_step: Decimal  # the amount must be a multiple (0: any)
    confirmations: int = 0


@dataclass(frozen=True, slots=True)
class DepositAddress:
    venue: str
    asset: str
    network: str
    address: str
    tag: str = ""  # memo / secondary address


@dataclass(frozen=True, slots=True)
class WithdrawalRequest:
    asset: str
    network: str
    amount: Decimal  # what should arrive at the destination (the venue's fee is reported apart)
    address: str
    tag: str
    client_id: str  # ours: Binance `withdrawOrderId`; Upbit has none (looked up by its fields)


@dataclass(frozen=True, slots=True)
class TransferReport:
    """A withdrawal or a deposit as the venue reports it."""

    venue: str
    asset: str
    network: str
    kind: str  # "withdrawal" | "deposit"
    status: TransferStatus
    amount: Decimal = ZERO
    fee: Decimal = ZERO  # withdrawals: the network fee, in the asset, charged by the sending venue
    transfer_id: str = ""  # the venue's id
    client_id: str = ""
    txid: str = ""
    address: str = ""
    error: str = ""
