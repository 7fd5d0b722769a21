"""One evaluation of one coin: premium, best opportunity, LiveGuard, and a pair of orders if it passes."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache

from django.conf import settings
from django.db import transaction

from liveguard import guard as lg
from liveguard.models import GuardLimits

from . import ledger, positions
from .execution import PairRequest, PaperExecutor
from .fields import money
from .models import LedgerEntry, Pair, Position, Signal
from .quant.service import position_cap
from .signals import Caps, Fees, Opportunity, best_opportunity, premium
from .state import PremiumRecord, SignalRecord, StateManager

log = logging.getLogger(__name__)

FX_KEY = "upbit"
DEFAULT_LOT_STEP = Decimal("0.00000001")


@lru_cache(maxsize=1)
def get_state() -> StateManager:
    return StateManager.from_url(settings.REDIS_URL)


def fees() -> Fees:
    return Fees(upbit=settings.UPBIT_TAKER_FEE, binance=settings.BINANCE_TAKER_FEE)


_limits_cache: tuple[float, int, GuardLimits] | None = None


def current_limits(state: StateManager | None = None, max_age: float = 5.0, version: int | None = None) -> GuardLimits:
    """Limits from the database, re-read when an edit bumped their version (or every few seconds)."""
    global _limits_cache
    now = time.monotonic()
    if version is None:
        version = (state or get_state()).limits_version()
    if _limits_cache is None or _limits_cache[1] != version or now - _limits_cache[0] > max_age:
        _limits_cache = (now, version, GuardLimits.load())
    return _limits_cache[2]


def forget_limits() -> None:
    """Drop per-process caches (tests start from an empty database)."""
    global _limits_cache, _live_executor
    _limits_cache = None
    _live_executor = None
    _funded.clear()


_live_executor = None


def default_executor(state: StateManager, fee: Fees):
    """Paper fills unless LIVE_MODE (the system checks insist on keys and an explicit opt-in)."""
    global _live_executor
    if not settings.LIVE_MODE:
        return PaperExecutor(state, fee)
    if _live_executor is None:
        from .exchanges.binance import BinanceAdapter
        from .exchanges.upbit import UpbitAdapter
        from .live import LiveExecutor

        adapters = {
            "upbit": UpbitAdapter(settings.UPBIT_REST_URL, settings.UPBIT_API_KEY, settings.UPBIT_SECRET_KEY),
            "binance": BinanceAdapter(settings.BINANCE_REST_URL, settings.BINANCE_API_KEY, settings.BINANCE_SECRET_KEY),
        }
        adapters["binance"].sync_clock()
        _live_executor = LiveExecutor(state, fee, adapters)
    return _live_executor


def lot_step(state: StateManager, symbol: str) -> Decimal:
    rules = state.get_rules("binance", symbol)
    return Decimal(rules["step_size"]) if rules.get("step_size") else DEFAULT_LOT_STEP


def fx_rate(state: StateManager):
    """The KRW/USDT record the loop trades on: the Upbit KRW-USDT book, or the fixed rate."""
    if settings.FX_SOURCE == "fixed":
        from .state import FxRecord

        return FxRecord("fixed", settings.FX_FIXED_RATE, None, None, datetime.now(UTC))
    return state.get_fx(FX_KEY)


_funded: set[tuple[str, str]] = set()


def ensure_paper_funds(state: StateManager, symbol: str, upbit_mid: Decimal, binance_mid: Decimal, fx: Decimal) -> None:
    """Deposit paper mode's starting balances the first time a venue or coin is traded."""
    if settings.LIVE_MODE or {("upbit", symbol), ("binance", symbol)} <= _funded:
        return
    funded = set(LedgerEntry.objects.filter(kind=LedgerEntry.Kind.DEPOSIT).values_list("venue", "asset").distinct())
    wanted = [("upbit", "KRW", settings.PAPER_START_KRW), ("binance", "USDT", settings.PAPER_START_USDT),
              ("upbit", symbol, settings.PAPER_START_COIN_KRW / upbit_mid),
              ("binance", symbol, settings.PAPER_START_COIN_KRW / (binance_mid * fx))]
    missing = [(v, a, amount) for v, a, amount in wanted if (v, a) not in funded]
    if not missing:
        _funded.update(funded)
        return
    token = None
    deadline = time.monotonic() + 3
    while token is None and time.monotonic() < deadline:
        token = state.acquire_lock("funding", 5000)
        if token is None:
            time.sleep(0.01)  # another worker is depositing; its deposits may be ours too
    if token is None:
        return
    try:
        funded = set(LedgerEntry.objects.filter(kind=LedgerEntry.Kind.DEPOSIT).values_list("venue", "asset").distinct())
        for venue, asset, amount in missing:
            if (venue, asset) not in funded:
                ledger.deposit(venue, asset, money(amount))
        _funded.update((venue, asset) for venue, asset, _ in wanted)
    finally:
        state.release_lock("funding", token)


def should_record_rejection(state: StateManager, symbol: str, check: str) -> bool:
    """A blocked opportunity repeats every tick; keep one record of it per few seconds."""
    return bool(state.redis.set(f"arbitrage:rejected:{symbol}:{check}", "1", nx=True, px=3000))


def evaluate_symbol(symbol: str, *, state: StateManager | None = None, executor=None) -> str:
    """Evaluate one coin now; returns what happened ("no_data", "none", "rejected:<check>", "executed", ...)."""
    state = state or get_state()
    ctx = state.evaluation_context(symbol, FX_KEY)
    upbit, binance = ctx.upbit, ctx.binance
    fx = fx_rate(state) if settings.FX_SOURCE == "fixed" else ctx.fx
    if upbit is None or binance is None or fx is None or not (upbit.bids and upbit.asks and binance.bids and binance.asks):
        return "no_data"
    fee = fees()
    now = datetime.now(UTC)
    prem = premium(symbol, upbit, binance, fx.rate, fee)
    state.save_premium(PremiumRecord(symbol, money(prem.premium_pct), prem.upbit_mid, prem.binance_mid, fx.rate,
                                     money(prem.best_net_upbit_to_binance), money(prem.best_net_binance_to_upbit), now),
                       settings.PREMIUM_HISTORY_SECONDS)
    limits = current_limits(state, version=ctx.limits_version)
    step = ctx.lot_step or DEFAULT_LOT_STEP
    max_notional = limits.max_position_size
    # The quant cap: a volatility-targeted size times the coin's portfolio weight.
    cap = position_cap(ctx.volatility, ctx.weight, ctx.weighted_symbols, ctx.total_balance)
    if cap is not None:
        max_notional = min(max_notional, cap)
    # Most ticks carry no opportunity even before balances cap it: find out without the database.
    if best_opportunity(symbol, upbit, binance, fx.rate, fee, limits.min_spread_pct,
                        lambda b, s: Caps(max_notional), step) is None:
        return "none"
    ensure_paper_funds(state, symbol, prem.upbit_mid, prem.binance_mid, fx.rate)
    balances = ledger.balances()

    def caps_for(buy_exchange: str, sell_exchange: str) -> Caps:
        return Caps(
            max_notional_krw=max_notional,
            buy_quote_available=balances.get((buy_exchange, ledger.QUOTE[buy_exchange]), Decimal(0)),
            sell_base_available=balances.get((sell_exchange, symbol), Decimal(0)) * limits.max_inventory_pct / 100,
        )

    opportunity = best_opportunity(symbol, upbit, binance, fx.rate, fee, limits.min_spread_pct, caps_for, step)
    if opportunity is None:
        return "none"
    tick = max(filter(None, (upbit.received_at, binance.received_at)), default=None)
    state.save_signal(SignalRecord(
        symbol, opportunity.buy_exchange, opportunity.sell_exchange, money(opportunity.buy_price),
        money(opportunity.sell_price), money(opportunity.spread), money(opportunity.spread_pct), now,
        quantity=opportunity.quantity, net_spread_pct=money(opportunity.net_spread_pct), tick_received_at=tick,
    ))
    token = state.acquire_lock(f"symbol:{symbol}", settings.SIGNAL_LOCK_MS)
    if token is None:
        return "locked"  # another worker is trading this coin right now
    try:
        return _guard_and_execute(state, ctx, opportunity, fx, limits, balances, step, executor, now, tick)
    finally:
        state.release_lock(f"symbol:{symbol}", token)


def _guard_and_execute(state, ctx, opportunity: Opportunity, fx, limits, balances, step, executor, now, tick) -> str:
    symbol = opportunity.symbol
    guard = lg.Guard(state, limits)
    fee = fees()
    block = (
        guard.check_kill_switch(ctx.kill_switch)
        or guard.check_reconciled(settings.LIVE_MODE, ctx.reconciled)
        or guard.check_paused(symbol, ctx.paused)
        or guard.check_circuit_breaker(ctx.breaker)
        or guard.check_quotes(opportunity.buy_book_time, opportunity.sell_book_time, now)
        or guard.check_fx(fx, now, reference=ctx.reference_fx.rate if ctx.reference_fx else None,
                          previous=ctx.fx_minute_ago)
        or guard.check_market_warning(symbol, ctx.market_warning)
        or guard.check_slippage(opportunity)
        or guard.check_balances(opportunity, balances.get((opportunity.buy_exchange, ledger.QUOTE[opportunity.buy_exchange]), Decimal(0)),
                                balances.get((opportunity.sell_exchange, symbol), Decimal(0)), fee.of(opportunity.buy_exchange))
        or guard.check_losses()
    )
    reservation = None
    if block is None:
        reserved = guard.reserve(symbol, opportunity.notional_krw)
        if isinstance(reserved, lg.Block):
            block = reserved
        else:
            reservation = reserved
    if block is not None:
        if should_record_rejection(state, symbol, block.check):
            _record_signal(opportunity, Signal.Outcome.REJECTED, block.reason, now)
            lg.record(block, symbol)
        return f"rejected:{block.check}"
    signal = _record_signal(opportunity, Signal.Outcome.EXECUTED, "", now)
    pair = Pair.objects.create(symbol=symbol, signal=signal, buy_exchange=opportunity.buy_exchange,
                               sell_exchange=opportunity.sell_exchange, mode="live" if settings.LIVE_MODE else "paper")
    request = PairRequest(symbol, opportunity.buy_exchange, opportunity.sell_exchange, opportunity.quantity,
                          opportunity.buy_price_native, opportunity.sell_price_native, fx.rate, step)
    try:
        # The fills, the pair's result and the position commit together: no reader ever sees a
        # filled pair without its position.
        executor = executor or default_executor(state, fee)
        with transaction.atomic():
            pair = executor.execute(pair, request, tick_received_at=tick)
            position = positions.apply_pair(pair) if pair.quantity else None
    except Exception:
        guard.release(reservation)
        Pair.objects.filter(pk=pair.pk).update(state=Pair.State.FAILED, note="executor raised; see logs")
        Signal.objects.filter(pk=signal.pk).update(outcome=Signal.Outcome.FAILED, reason="executor raised")
        raise
    executor.publish(pair, tick)  # Redis mirrors the ledger once the ledger has it
    if pair.quantity == 0:
        guard.release(reservation)
        Signal.objects.filter(pk=signal.pk).update(outcome=Signal.Outcome.FAILED, reason=pair.note or "nothing filled")
        return "failed"
    for expected, realized, side in ((pair.expected_buy_price, pair.buy_price, "buy"), (pair.expected_sell_price, pair.sell_price, "sell")):
        slip = guard.check_realized_slippage(expected, realized, side)
        if slip:
            lg.record(slip, symbol)
    sync_exposure(state, symbol, position)
    positions.publish(state, position, symbol)
    return "executed"


def sync_exposure(state: StateManager, symbol: str, position: Position | None) -> None:
    """The guard's exposure counter follows the position's entry notional."""
    exposure = position.entry_buy_price * position.quantity if position else Decimal(0)
    state.set_exposure(symbol, int(exposure.to_integral_value(rounding="ROUND_CEILING")))


def _record_signal(o: Opportunity, outcome: str, reason: str, now: datetime) -> Signal:
    return Signal.objects.create(
        symbol=o.symbol, buy_exchange=o.buy_exchange, sell_exchange=o.sell_exchange, buy_price=money(o.buy_price),
        sell_price=money(o.sell_price), quantity=o.quantity, spread=money(o.spread), spread_pct=money(o.spread_pct),
        net_spread_pct=money(o.net_spread_pct), fx_rate=o.fx_rate, outcome=outcome, reason=reason[:300], detected_at=now,
    )
