"""What liveguard needs from the layers that use it, handed over at wiring time.

liveguard is policy: it takes values and answers decisions, and it never imports the trading core
or the dashboard (tests/test_architecture.py holds it to that). What it must read or trigger there
(the process's hot state, the counters the database holds, the ledger's quote, a flatten) is
registered here by trading's AppConfig.ready() (trading/wiring.py), and the dashboard registers
its announcement of a changed control. A hook that trading must provide and did not is a
configuration error, raised, never skipped: a control that cannot be mirrored or a flatten that
cannot be requested must not look as if it worked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from django.core.exceptions import ImproperlyConfigured


class GuardState(Protocol):
    """The hot state's guard keys (trading.state.StateManager): the mirror every evaluation reads."""

    def kill_switch(self) -> bool | None: ...
    def set_kill_switch(self, engaged: bool) -> None: ...
    def breaker(self) -> tuple[str, int] | None: ...
    def trip_breaker(self, reason: str, cooldown_s: int) -> bool: ...
    def bump_limits_version(self) -> int: ...
    def market_warning(self, symbol: str) -> bool: ...
    def add_paused(self, symbol: str) -> None: ...
    def set_paused(self, symbols: Iterable[str]) -> None: ...
    def quote_version(self, venue: str) -> int: ...
    def reserve_trade(self, symbol: str, hour: str, day: str, exposure_krw: int, **limits) -> str: ...
    def release_trade(self, symbol: str, hour: str, day: str, exposure_krw: int, quote_venue: str | None = None,
                      reservation_id: str = "") -> None: ...
    def settle_quote(self, venue: str, reservation_id: str) -> None: ...
    def mirror_guard(self, *, kill_switch: bool, paused: Iterable[str], hour: str, day: str, trades_hour: int,
                     trades_day: int, exposure_krw: dict[str, int]) -> tuple[bool, int]: ...


class FxQuote(Protocol):
    """A KRW/USDT rate as the feeds record it (its value and when it was seen)."""

    rate: Decimal
    timestamp: datetime


@dataclass(frozen=True)
class DatabaseCounts:
    """What the trading database says the Redis counters must hold (rebuilt after a flush)."""

    trades_hour: int
    trades_day: int
    exposure_krw: dict[str, int]


@dataclass
class Hooks:
    state: Callable[[], GuardState] | None = None
    database_counts: Callable[[datetime], DatabaseCounts] | None = None
    quote_balance: Callable[[str], Decimal] | None = None
    known_symbol: Callable[[GuardState, str], bool] | None = None
    request_flatten: Callable[[], object] | None = None
    announce_control: Callable[[GuardState], object] | None = None  # optional: no dashboard, nobody to tell


_hooks = Hooks()
HOOK_NAMES = frozenset(f.name for f in fields(Hooks))


def connect(**hooks: Callable) -> None:
    """Register hooks by name (at wiring time); an unknown name is a programming error."""
    unknown = set(hooks) - HOOK_NAMES
    if unknown:
        raise TypeError(f"unknown liveguard hooks: {sorted(unknown)}")
    for name, hook in hooks.items():
        setattr(_hooks, name, hook)


def _required(name: str) -> Callable:
    hook = getattr(_hooks, name)
    if hook is None:
        raise ImproperlyConfigured(f"liveguard's {name!r} hook is not connected (trading's AppConfig.ready() connects it)")
    return hook


def state() -> GuardState:
    """The process's hot state."""
    return _required("state")()


def database_counts(now: datetime) -> DatabaseCounts:
    """This hour's and this trading day's counted pairs and each coin's exposure, from the database."""
    return _required("database_counts")(now)


def quote_balance(venue: str) -> Decimal:
    """The ledger's balance of the venue's quote currency."""
    return _required("quote_balance")(venue)


def known_symbol(state: GuardState, symbol: str) -> bool:
    """Whether the coin is one the system trades or has traded (a control on any other is refused)."""
    return _required("known_symbol")(state, symbol)


def request_flatten() -> None:
    """Ask the trading core to close every open position (asynchronously)."""
    _required("request_flatten")()


def announce_control(state: GuardState) -> None:
    """Tell whoever listens (the dashboards) that a control changed."""
    if _hooks.announce_control is not None:
        _hooks.announce_control(state)
