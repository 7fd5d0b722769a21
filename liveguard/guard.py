"""Every safety check that stands between a signal and a pair of orders.

Checks run cheapest first; the first that fails blocks the pair and is recorded with its reason.
The last check reserves a trade slot, the exposure and the buy venue's quote atomically in Redis,
so concurrent workers cannot both pass a limit that only one trade fits under.

Fail closed: the kill switch and the pauses are read from the Redis mirror *and* the database
(either engaged blocks); a mirror that cannot be read blocks; a reservation is refused until the
database has been mirrored into Redis (after a flush or restart the counters are rebuilt first).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import redis

from . import ports, telemetry
from .clock import start_of_trading_day, start_of_trading_hour, trading_day_keys  # noqa: F401  (re-exported)
from .models import GuardEvent, GuardLimits, KillSwitch, SymbolPause
from .ports import FxQuote, GuardState
from .services import mirror_guard_state

log = logging.getLogger(__name__)
HUNDRED = Decimal(100)
UNSET = object()  # "not prefetched: read it yourself"
# The grain of a quote reservation in the hot state: the guard converts amounts to whole units
# (hundredths of KRW or USDT) before the atomic reserve compares them.
QUOTE_UNIT = Decimal("0.01")


@dataclass
class Block:
    check: str
    reason: str
    detail: dict = field(default_factory=dict)


@dataclass
class Reservation:
    symbol: str
    hour: str
    day: str
    exposure_krw: int
    quote_venue: str = ""  # the buy venue whose quote is reserved ("" = none)
    quote_units: int = 0  # in QUOTE_UNIT (hundredths of KRW or USDT)
    reservation_id: str = ""


def quote_units(amount: Decimal, rounding: str = ROUND_CEILING) -> int:
    """An amount of quote in whole QUOTE_UNITs: what a pair needs rounds up, what is held rounds down."""
    return int((amount / QUOTE_UNIT).to_integral_value(rounding=rounding))


def db_kill_switch() -> bool:
    """The kill switch as committed in the database (the truth)."""
    return bool(KillSwitch.objects.filter(pk=1).values_list("engaged", flat=True).first())


def db_paused(symbol: str) -> bool:
    return SymbolPause.active().filter(symbol=symbol).exists()


def kill_switch_engaged(state: GuardState, mirrored=UNSET) -> bool:
    """Engaged when the Redis mirror or the database says so, or when the mirror cannot be read.

    A mirror that is missing (Redis flushed or restarted) or disagrees with the database is
    written again from the database.
    """
    if mirrored is UNSET:
        try:
            mirrored = state.kill_switch()
        except redis.RedisError as exc:
            log.error("kill switch mirror unreadable (%s): trading blocked", exc)
            return True
    engaged = db_kill_switch()
    if mirrored is None or (engaged and not mirrored):
        try:
            state.set_kill_switch(engaged)
        except redis.RedisError as exc:
            log.error("kill switch mirror not restored (%s)", exc)
            return True
    return engaged or bool(mirrored)



class Guard:
    def __init__(self, state: GuardState, limits: GuardLimits | None = None):
        self.state = state
        self.limits = limits or GuardLimits.load()

    # --- the checks ------------------------------------------------------------------------------
    def check_kill_switch(self, mirrored=UNSET) -> Block | None:
        """mirrored: the value read from Redis with the evaluation (None: missing), or UNSET to read it."""
        if kill_switch_engaged(self.state, mirrored):
            return Block("kill_switch", "kill switch engaged")
        return None

    def check_reconciled(self, live_mode: bool, reconciled: bool) -> Block | None:
        if live_mode and not reconciled:
            return Block("reconciliation", "live trading waits until the venues' balances and orders agree with the ledger")
        return None

    def check_paused(self, symbol: str, paused: bool) -> Block | None:
        """paused: the Redis mirror's answer; the database is asked too (a pause survives a lost mirror)."""
        if paused or db_paused(symbol):
            return Block("paused", f"{symbol} is paused by an operator")
        return None

    def check_circuit_breaker(self, tripped=UNSET) -> Block | None:
        if tripped is UNSET:
            tripped = self.state.breaker()
        if tripped:
            reason, left = tripped
            return Block("circuit_breaker", f"circuit breaker tripped ({reason}); {left} s of cooldown left")
        return None

    def check_quotes(self, buy_time: datetime, sell_time: datetime, now: datetime) -> Block | None:
        limits = self.limits
        for name, stamp in (("buy", buy_time), ("sell", sell_time)):
            age_ms = (now - stamp).total_seconds() * 1000
            if age_ms > limits.max_quote_age_ms:
                return Block("stale_quote", f"{name} book is {age_ms:.0f} ms old (limit {limits.max_quote_age_ms} ms)",
                             {"side": name, "age_ms": round(age_ms)})
        skew_ms = abs((buy_time - sell_time).total_seconds()) * 1000
        if skew_ms > limits.max_quote_skew_ms:
            return Block("stale_quote", f"books are {skew_ms:.0f} ms apart (limit {limits.max_quote_skew_ms} ms)",
                         {"skew_ms": round(skew_ms)})
        return None

    def check_fx(self, fx: FxQuote | None, now: datetime, reference: Decimal | None = None,
                 previous: Decimal | None = None, reference_age_ms: float | None = None) -> Block | None:
        limits = self.limits
        if fx is None:
            return Block("fx", "no KRW/USDT rate")
        age_ms = (now - fx.timestamp).total_seconds() * 1000
        if age_ms > limits.max_fx_age_ms:
            return Block("fx", f"KRW/USDT rate is {age_ms:.0f} ms old (limit {limits.max_fx_age_ms} ms)")
        for label, other in (("the reference rate", reference), ("the last minute's rate", previous)):
            if other:
                jump = abs(fx.rate - other) / other * HUNDRED
                if jump > limits.fx_jump_pct:
                    return Block("fx", f"KRW/USDT {fx.rate} is {jump:.2f}% away from {label} {other} "
                                       f"(limit {limits.fx_jump_pct}%)")
        return None

    def check_market_warning(self, symbol: str, flagged=UNSET) -> Block | None:
        if not self.limits.block_market_warnings:
            return None
        if flagged is UNSET:
            flagged = self.state.market_warning(symbol)
        if flagged:
            return Block("market_warning", f"Upbit flags {symbol} with a caution")
        return None

    def check_slippage(self, opportunity) -> Block | None:
        limit = self.limits.max_slippage_pct
        buy_slip = (opportunity.buy_price - opportunity.top_buy_price) / opportunity.top_buy_price * HUNDRED
        sell_slip = (opportunity.top_sell_price - opportunity.sell_price) / opportunity.top_sell_price * HUNDRED
        worst = max(buy_slip, sell_slip)
        if worst > limit:
            return Block("slippage", f"expected slippage {worst:.3f}% against the book (limit {limit}%)",
                         {"buy_pct": str(buy_slip), "sell_pct": str(sell_slip)})
        return None

    def check_realized_slippage(self, expected: Decimal, realized: Decimal, side: str) -> Block | None:
        """After a fill: how far the realised price fell from the expected one."""
        worse = (realized - expected) if side == "buy" else (expected - realized)
        pct = worse / expected * HUNDRED
        if pct > self.limits.max_slippage_pct:
            return Block("slippage", f"realised {side} price {realized} is {pct:.3f}% worse than expected {expected}")
        return None

    def check_balances(self, opportunity, quote_available: Decimal, base_available: Decimal,
                       buy_fee: Decimal) -> Block | None:
        needed_quote = opportunity.buy_price_native * opportunity.quantity * (1 + buy_fee)
        if quote_available < needed_quote:
            return Block("balance", f"{opportunity.buy_exchange} has {quote_available} quote, needs {needed_quote:.8f}")
        if base_available < opportunity.quantity:
            return Block("balance", f"{opportunity.sell_exchange} has {base_available} {opportunity.symbol}, "
                                    f"needs {opportunity.quantity}")
        return None

    def check_losses(self, pnl_today: Decimal | None, pnl_total: Decimal | None) -> Block | None:
        """Losses on equity (docs/ACCOUNTING.md): today's since 00:00 KST and the total since the start,
        unrealized included, flows excluded. Without current figures, refuse (fail closed)."""
        limits = self.limits
        if pnl_today is None or pnl_total is None:
            return Block("daily_loss", "no current equity figures: losses cannot be checked")
        day, total = max(Decimal(0), -pnl_today), max(Decimal(0), -pnl_total)
        if day >= limits.max_daily_loss:
            return Block("daily_loss", f"daily loss {day:.0f} KRW reached the limit {limits.max_daily_loss:.0f} KRW")
        if total >= limits.max_total_loss:
            return Block("total_loss", f"total loss {total:.0f} KRW reached the limit {limits.max_total_loss:.0f} KRW")
        return None

    def reserve(self, symbol: str, notional_krw: Decimal, *, quote_venue: str | None = None,
                quote_needed: Decimal | None = None,
                quote_available: Decimal | Callable[[], Decimal] | None = None) -> Reservation | Block:
        """Take a trade slot, the coin's exposure and (with quote_venue) the quote the buy leg spends.

        quote_needed: quote the buy venue spends (its price x quantity x (1 + fee)), in the
        venue's quote currency. quote_available: the ledger's balance of that quote, or a callable
        that reads it; by default the guard reads the ledger itself. Read by the guard (callable
        or default), the balance is checked against settlements that landed meanwhile, so a
        balance that predates a settled pair is never paired with that pair's released
        reservation. Reservations of every coin on the venue count against the balance.
        """
        limits = self.limits
        hour, day = trading_day_keys()
        exposure = int(notional_krw.to_integral_value(rounding=ROUND_CEILING))
        quote = {}
        reservation_id = ""
        if quote_venue:
            reservation_id = uuid.uuid4().hex
            if quote_available is None:
                def quote_available() -> Decimal:
                    return ports.quote_balance(quote_venue)
            quote = {"quote_venue": quote_venue, "quote_units": quote_units(quote_needed or Decimal(0)),
                     "reservation_id": reservation_id}
        result = available = None
        for _ in range(3):
            if quote_venue:
                version = self.state.quote_version(quote_venue) if callable(quote_available) else None
                available = quote_available() if callable(quote_available) else quote_available
                quote.update(quote_available_units=quote_units(available, ROUND_FLOOR), quote_version=version)
            result = self.state.reserve_trade(
                symbol, hour, day, exposure, max_per_hour=limits.max_trades_per_hour,
                max_per_day=limits.max_trades_per_day, max_exposure_krw=int(limits.max_position_size),
                max_total_exposure_krw=int(limits.max_total_exposure),
                require_mirrored=True, **quote,
            )
            if result == "unmirrored":
                mirror_guard_state(self.state)  # Redis lost the counters: rebuild them from the database
            elif result != "quote_changed":  # else a pair settled since the balance was read: read again
                break
        if result == "ok":
            return Reservation(symbol, hour, day, exposure, quote_venue or "", quote.get("quote_units", 0), reservation_id)
        messages = {
            "trades_per_hour": f"{limits.max_trades_per_hour} trades this hour already",
            "trades_per_day": f"{limits.max_trades_per_day} trades today already",
            "position_size": f"{symbol} exposure would exceed {limits.max_position_size:.0f} KRW",
            "total_exposure": f"exposure across every coin would exceed {limits.max_total_exposure:.0f} KRW",
            "quote_balance": f"{quote_venue} quote: {quote_needed} needed, {available} in the ledger less what pairs in "
                             f"flight reserved",
            "quote_changed": f"{quote_venue} quote kept changing while reserving",
            "unmirrored": "guard state not mirrored into Redis",
        }
        return Block(result, messages.get(result, result))

    def release(self, reservation: Reservation) -> None:
        """Give back everything a reservation took: its pair was never sent, or nothing filled."""
        self.state.release_trade(reservation.symbol, reservation.hour, reservation.day, reservation.exposure_krw,
                                 reservation.quote_venue or None, reservation.reservation_id)

    def settle(self, reservation: Reservation) -> None:
        """The pair's fills are in the ledger (committed): give back its quote reservation, since the
        ledger's balance now shows the spend. The trade slot and the exposure stay taken."""
        if reservation.quote_venue and reservation.reservation_id:
            self.state.settle_quote(reservation.quote_venue, reservation.reservation_id)

    # --- circuit breaker ---------------------------------------------------------------------
    def maybe_trip_breaker(self, total_balance_krw: Decimal, var_95: Decimal | None = None, *,
                           pnl_today: Decimal = Decimal(0)) -> str | None:
        """Trip when today's loss on equity reaches the threshold share of equity, or exceeds the VaR budget."""
        if total_balance_krw <= 0:
            return None
        loss = max(Decimal(0), -pnl_today)
        threshold = total_balance_krw * self.limits.circuit_breaker_threshold_pct / HUNDRED
        reason = None
        if loss > 0 and loss >= threshold:
            reason = f"loss {loss:.0f} KRW >= {self.limits.circuit_breaker_threshold_pct}% of balance"
        elif var_95 is not None and loss > total_balance_krw * var_95:
            reason = f"loss {loss:.0f} KRW > VaR95 budget {total_balance_krw * var_95:.0f} KRW"
        if reason and self.state.trip_breaker(reason, self.limits.circuit_breaker_cooldown):
            record(Block("circuit_breaker", f"tripped: {reason}"))
            log.warning("circuit breaker tripped: %s", reason)
            return reason
        return None


def record(block: Block, symbol: str = "") -> GuardEvent:
    telemetry.count_rejection(block.check)
    return GuardEvent.objects.create(check_name=block.check, symbol=symbol, reason=block.reason[:300], detail=block.detail)
