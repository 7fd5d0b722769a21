"""One evaluation of one coin: premium, best opportunity, LiveGuard, and a pair of orders if it passes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings

from liveguard import guard as lg
from liveguard.models import GuardLimits
from liveguard.services import pause_symbol

from . import ledger, positions, strategies, telemetry
from .execution import PAUSE_PREFIX, PairRequest, held_lock
from .fields import money
from .metrics import figures
from .models import LedgerEntry, Pair, Position, Signal
from .quant.service import position_cap
from .signals import Caps, Fees, Opportunity, Premium, best_opportunity, evaluate_direction, premium
from .state import BookRecord, EvaluationContext, FxRecord, PremiumRecord, SignalRecord, StateManager
from .wiring import CACHE_AGE_S, current_limits, default_executor, fees, forget_limits, get_state  # noqa: F401  (re-exported)
from .wiring import funded_paper_accounts as _funded

log = logging.getLogger(__name__)

FX_KEY = "upbit"
DEFAULT_LOT_STEP = Decimal("0.00000001")


def lot_step(state: StateManager, symbol: str) -> Decimal:
    rules = state.get_rules("binance", symbol)
    return Decimal(rules["step_size"]) if rules.get("step_size") else DEFAULT_LOT_STEP


def fx_rate(state: StateManager):
    """The KRW/USDT record the loop trades on: the Upbit KRW-USDT book, or the fixed rate."""
    if settings.FX_SOURCE == "fixed":
        return FxRecord("fixed", settings.FX_FIXED_RATE, None, None, datetime.now(UTC))
    return state.get_fx(FX_KEY)


def ensure_paper_funds(state: StateManager, symbol: str, upbit_mid: Decimal, binance_mid: Decimal, fx: Decimal) -> None:
    """Deposit paper mode's starting balances the first time a venue or coin is traded."""
    if settings.LIVE_MODE or {("upbit", symbol), ("binance", symbol)} <= _funded:
        return
    wanted = [("upbit", "KRW", settings.PAPER_START_KRW), ("binance", "USDT", settings.PAPER_START_USDT),
              ("upbit", symbol, settings.PAPER_START_COIN_KRW / upbit_mid),
              ("binance", symbol, settings.PAPER_START_COIN_KRW / (binance_mid * fx))]
    # A deposit is a flow, valued at the marks of the moment (docs/ACCOUNTING.md), never performance.
    marks = {"KRW": Decimal(1), "USDT": fx}
    value_of = {("upbit", symbol): upbit_mid, ("binance", symbol): binance_mid * fx}
    funded = _deposited([(v, a) for v, a, _ in wanted if (v, a) not in _funded]) | _funded
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
        funded = _deposited([(v, a) for v, a, _ in missing])
        for venue, asset, amount in missing:
            if (venue, asset) not in funded:
                amount = money(amount)
                ledger.deposit(venue, asset, amount, value_krw=amount * (marks.get(asset) or value_of[(venue, asset)]))
        _funded.update((venue, asset) for venue, asset, _ in wanted)
    finally:
        state.release_lock("funding", token)


def _deposited(holdings: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (venue, asset) have had a deposit: each looked up through the ledger's (venue,
    asset) index up to its first deposit, never by scanning the whole ledger for its kind."""
    return {(venue, asset) for venue, asset in holdings
            if LedgerEntry.objects.filter(venue=venue, asset=asset, kind=LedgerEntry.Kind.DEPOSIT).exists()}


def should_record_rejection(state: StateManager, symbol: str, check: str) -> bool:
    """A blocked opportunity repeats every tick; keep one record of it per few seconds."""
    return bool(state.first_rejections([(symbol, check)]))


@dataclass(slots=True)
class Look:
    """What one coin's books offer now, before balances: the premium and how to find an opportunity."""

    symbol: str
    fx: FxRecord
    fee: Fees
    premium: Premium
    limits: GuardLimits
    step: Decimal
    max_notional: Decimal
    tick: datetime | None  # when the feed received the newer of the two books
    books: Callable[[], tuple[BookRecord, BookRecord]]  # (upbit, binance) in full, decoded when first needed
    max_age: float = CACHE_AGE_S  # how old the cached strategies may be (the screen allows more)

    def finder(self, state: StateManager, *, database: bool = True) -> Callable | None:
        """find(caps_for) -> Opportunity | None by the coin's strategy; None when it wants nothing now."""
        return _finder(state, self.symbol, self.books, self.fx.rate, self.fee, self.limits, self.premium, self.step,
                       database=database, max_age=self.max_age)

    def premium_record(self, now: datetime) -> PremiumRecord:
        prem = self.premium
        return PremiumRecord(self.symbol, money(prem.premium_pct), prem.upbit_mid, prem.binance_mid, self.fx.rate,
                             money(prem.best_net_upbit_to_binance), money(prem.best_net_binance_to_upbit), now)

    def signal_record(self, opportunity: Opportunity, now: datetime) -> SignalRecord:
        o = opportunity
        return SignalRecord(o.symbol, o.buy_exchange, o.sell_exchange, money(o.buy_price), money(o.sell_price), money(o.spread),
                            money(o.spread_pct), now, quantity=o.quantity, net_spread_pct=money(o.net_spread_pct),
                            tick_received_at=self.tick)


def look(state: StateManager, symbol: str, ctx: EvaluationContext, books: Callable | None = None,
         max_age: float = CACHE_AGE_S) -> Look | None:
    """The coin's premium and what its limits leave, from its context; None without both books and a
    rate. Reads only the context and the per-process caches of fees, limits and strategies, re-read
    from the database when an edit bumped the controls' version or when older than max_age. books()
    gives the full books when the context holds only their best levels (the batched screen)."""
    upbit, binance = ctx.upbit, ctx.binance
    fx = fx_rate(state) if settings.FX_SOURCE == "fixed" else ctx.fx
    if upbit is None or binance is None or fx is None or not (upbit.bids and upbit.asks and binance.bids and binance.asks):
        return None
    fee = fees(state, max_age, version=ctx.limits_version).with_fx(fx)  # the third leg priced from the KRW-USDT book
    prem = premium(symbol, upbit, binance, fx.rate, fee)
    limits = current_limits(state, max_age, version=ctx.limits_version)
    step = ctx.lot_step or DEFAULT_LOT_STEP
    # What the coin's exposure limit still leaves (a pair sized to the whole limit would be refused
    # by the reservation whenever any exposure is held).
    max_notional = max(Decimal(0), limits.max_position_size - ctx.exposure_krw)
    # The quant cap (trading.quant.service): RISK_BUDGET_KRW over the coin's premium volatility on the
    # holding horizon, times its weight x n; 0 blocks the coin (weight 0); None (no refit yet) leaves the limit.
    cap = position_cap(ctx.volatility, ctx.weight, ctx.weighted_symbols, ctx.total_balance)
    if cap is not None:
        max_notional = min(max_notional, cap)
    tick = max(filter(None, (upbit.received_at, binance.received_at)), default=None)
    return Look(symbol, fx, fee, prem, limits, step, max_notional, tick, books or (lambda: (upbit, binance)), max_age)


def refresh_caches(version: int, max_age: float = CACHE_AGE_S) -> None:
    """Re-read the fee rates, limits and strategies cached in this process that are older than max_age
    (an evaluate worker calls it when idle, so that its screens need not: a read of the database in a
    screen was a stall of every tick in flight)."""
    fees(None, max_age, version=version)
    current_limits(None, max_age, version=version)
    strategies.for_symbol("*", max_age)


def evaluate_symbol(symbol: str, *, state: StateManager | None = None, executor=None) -> str:
    """Evaluate one coin now, screen and pair in one call (tests, tools; the loop runs the two halves
    on their own queues: trading.evaluation.evaluate_batch and execute_opportunity). Returns what
    happened ("no_data", "none", "rejected:<check>", "executed", ...)."""
    state = state or get_state()
    ctx = state.evaluation_context(symbol, FX_KEY)
    seen = look(state, symbol, ctx)
    if seen is None:
        return "no_data"
    now = datetime.now(UTC)
    state.save_premium(seen.premium_record(now), settings.PREMIUM_HISTORY_SECONDS)
    telemetry.count_evaluations(1)
    return _trade(state, ctx, seen, now, executor, announce=True)


def execute_opportunity(symbol: str, *, state: StateManager | None = None, executor=None) -> str:
    """The pair half (the `pairs` queue): read the coin afresh, size the opportunity to the ledger's
    balances, run every check of LiveGuard and send the pair. The screen already announced the signal."""
    state = state or get_state()
    ctx = state.evaluation_context(symbol, FX_KEY)
    seen = look(state, symbol, ctx)
    if seen is None:
        return "no_data"
    return _trade(state, ctx, seen, datetime.now(UTC), executor, announce=False)


def _trade(state: StateManager, ctx: EvaluationContext, seen: Look, now: datetime, executor, *, announce: bool) -> str:
    symbol, max_notional, limits = seen.symbol, seen.max_notional, seen.limits
    find = seen.finder(state)
    if find is None:
        return "none"
    # Most ticks carry no opportunity even before balances cap it: find out without the database.
    if find(lambda b, s: Caps(max_notional)) is None:
        return "none"
    ensure_paper_funds(state, symbol, seen.premium.upbit_mid, seen.premium.binance_mid, seen.fx.rate)
    balances = ledger.balances()

    def caps_for(buy_exchange: str, sell_exchange: str) -> Caps:
        return Caps(
            max_notional_krw=max_notional,
            buy_quote_available=balances.get((buy_exchange, ledger.QUOTE[buy_exchange]), Decimal(0)),
            sell_base_available=balances.get((sell_exchange, symbol), Decimal(0)) * limits.max_inventory_pct / 100,
        )

    opportunity = find(caps_for)
    if opportunity is None:
        return "none"
    if announce:
        state.save_signal(seen.signal_record(opportunity, now))
        telemetry.count_signal()
        if seen.tick:
            telemetry.observe_tick_to_signal(telemetry.since(seen.tick))
    token = state.acquire_lock(f"symbol:{symbol}", settings.SIGNAL_LOCK_MS)
    if token is None:
        return "locked"  # another worker is trading this coin right now
    try:
        return _guard_and_execute(state, ctx, opportunity, seen.fx, limits, balances, seen.step, executor, now, seen.tick,
                                  token)
    finally:
        state.release_lock(f"symbol:{symbol}", token)


def _finder(state: StateManager, symbol: str, books: Callable, fx: Decimal, fee: Fees, limits, prem, step, *,
            database: bool = True, max_age: float = CACHE_AGE_S):
    """How this coin's strategy finds an opportunity, given caps; None when it wants none now.

    spread: the better direction whose net spread beats min_spread_pct. inventory: the same, with
    the transfers' amortised cost added to the minimum. convergence: only when the
    premium is far from its rolling mean and no position is open, in the direction that profits from
    its return; the round trip's expected net (the way back to the exit band, less both pairs'
    costs) must beat min_spread_pct, and the entry may walk the book by at most max_slippage_pct.
    """
    strategy = strategies.for_symbol(symbol, max_age)
    # The top of book nets the most in each direction (a walk stops at the first slice that does not
    # beat the minimum), so a coin whose both top nets fall short has no opportunity: most ticks end here.
    top = max((n for n in (prem.best_net_upbit_to_binance, prem.best_net_binance_to_upbit) if n is not None), default=None)
    if strategy.name == "inventory":
        # The coins bought here must travel back: their transfers' amortised cost is part of the edge.
        if top is None or top <= limits.min_spread_pct + strategy.transfer_cost_pct:
            return None
        measured = state.transfer_cost(symbol)
        minimum = limits.min_spread_pct + max(strategy.transfer_cost_pct, measured or 0)
        return lambda caps_for: best_opportunity(symbol, *books(), fx, fee, minimum, caps_for, step)
    if strategy.name != "convergence":
        if top is None or top <= limits.min_spread_pct:
            return None
        return lambda caps_for: best_opportunity(symbol, *books(), fx, fee, limits.min_spread_pct, caps_for, step)
    if state.get_position(symbol) is not None or (database and Position.objects.filter(symbol=symbol).exists()):
        return None  # one convergence position at a time; exits close it on reversion
    entry = strategies.convergence_entry(strategy, state.premium_history(symbol), prem.premium_pct)
    if entry is None:
        return None
    buy_venue, sell_venue, deviation = entry
    top_net = prem.best_net_binance_to_upbit if buy_venue == "binance" else prem.best_net_upbit_to_binance
    if top_net is None:
        return None
    premium_captured = prem.premium_pct if buy_venue == "binance" else -prem.premium_pct
    cost = premium_captured - top_net  # one pair's fees, third leg and half-spreads, in points
    expected = abs(deviation) - strategy.exit_deviation_pct - 2 * cost
    if expected <= limits.min_spread_pct:
        return None
    floor = top_net - limits.max_slippage_pct

    def find(caps_for):
        upbit, binance = books()
        buy, sell = (upbit, binance) if buy_venue == "upbit" else (binance, upbit)
        return evaluate_direction(symbol, buy, sell, fx, fee, floor, caps_for(buy_venue, sell_venue), step)

    return find


def _guard_and_execute(state, ctx, opportunity: Opportunity, fx, limits, balances, step, executor, now, tick,
                       lock_token: str | None = None) -> str:
    symbol = opportunity.symbol
    guard = lg.Guard(state, limits)
    fee = fees(state)
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
        or guard.check_losses(*loss_figures(state, ctx, fx.rate))
    )
    reservation = None
    if block is None:
        # [fail-closed 8.5] The buy venue's quote is reserved atomically across coins with the
        # trade slot and the exposure; the guard re-reads the ledger's balance for it.
        buy_venue = opportunity.buy_exchange
        reserved = guard.reserve(symbol, opportunity.notional_krw, quote_venue=buy_venue,
                                 quote_needed=opportunity.buy_price_native * opportunity.quantity * (1 + fee.of(buy_venue)),
                                 quote_available=lambda: ledger.balance(buy_venue, ledger.QUOTE[buy_venue]))
        if isinstance(reserved, lg.Block):
            block = reserved
        else:
            reservation = reserved
    if block is not None:
        if should_record_rejection(state, symbol, block.check):
            record_signal(opportunity, Signal.Outcome.REJECTED, block.reason, now)
            lg.record(block, symbol)
            log.info("guard blocks the pair of %s: %s (%s)", symbol, block.check, block.reason)
        return f"rejected:{block.check}"
    signal = record_signal(opportunity, Signal.Outcome.EXECUTED, "", now)
    pair = Pair.objects.create(symbol=symbol, signal=signal, buy_exchange=opportunity.buy_exchange,
                               sell_exchange=opportunity.sell_exchange, mode="live" if settings.LIVE_MODE else "paper")
    # Each leg's limit leaves the minimum net spread if both legs fill at their limits (signals.leg_limits).
    request = PairRequest(symbol, opportunity.buy_exchange, opportunity.sell_exchange, opportunity.quantity,
                          opportunity.buy_price_native, opportunity.sell_price_native, fx.rate, step,
                          buy_limit=opportunity.buy_limit_native, sell_limit=opportunity.sell_limit_native)
    executor = executor or default_executor(state, fee)
    try:
        # The lifecycle commits each stage itself; the coin's lock is kept alive for the whole pair.
        with held_lock(state, f"symbol:{symbol}", lock_token, settings.SIGNAL_LOCK_MS):
            pair = executor.execute(pair, request, tick_received_at=tick)
    except BaseException as exc:
        # Any failure once an order may exist (a soft time limit, a bug, the database going away):
        # the pair stays open for resume, the coin stops, and nothing is booked as failed.
        _executor_raised(state, guard, reservation, pair, signal, exc)
        raise
    executor.publish(pair, tick)  # Redis mirrors the ledger once the ledger has it
    if tick is not None and pair.quantity:
        telemetry.observe_tick_to_fill(telemetry.since(tick))
    if pair.stage != Pair.Stage.CLOSED:
        # [fail-closed 8.5] Slot, exposure and quote all stay reserved: orders may be live and the ledger
        # does not show their spend yet; the quote reservation lapses after QUOTE_HOLD_MS, once resume has booked it.
        Signal.objects.filter(pk=signal.pk).update(reason=pair.note[:300])
        return "unresolved"
    position = Position.objects.filter(symbol=symbol).first()
    if pair.quantity == 0:
        guard.release(reservation)  # [fail-closed 8.5] slot, exposure and quote given back
        Signal.objects.filter(pk=signal.pk).update(outcome=Signal.Outcome.FAILED, reason=pair.note or "nothing filled")
        sync_exposure(state, symbol, position)
        return "failed"
    guard.settle(reservation)  # [fail-closed 8.5] fills committed: the ledger now shows the quote spent
    for expected, realized, side in ((pair.expected_buy_price, pair.buy_price, "buy"), (pair.expected_sell_price, pair.sell_price, "sell")):
        slip = guard.check_realized_slippage(expected, realized, side)
        if slip:
            lg.record(slip, symbol)
    sync_exposure(state, symbol, position)
    positions.publish(state, position, symbol)
    return "executed"


def loss_figures(state: StateManager, ctx, fx: Decimal, max_age_s: float = 5.0) -> tuple[Decimal, Decimal]:
    """(today's PnL, total PnL) on equity: from the metrics beat keeps current, else computed now."""
    if ctx.pnl is not None and (datetime.now(UTC) - ctx.pnl[2]).total_seconds() <= max_age_s:
        return ctx.pnl[0], ctx.pnl[1]
    _, today, total = figures(state, fx)
    return today.pnl, total


def _executor_raised(state, guard, reservation, pair: Pair, signal: Signal, exc: BaseException) -> None:
    # [fail-closed 8.5] When orders may exist, everything stays reserved, the quote too (it lapses after QUOTE_HOLD_MS).
    if not record_executor_failure(state, pair, exc):
        Signal.objects.filter(pk=signal.pk).update(outcome=Signal.Outcome.FAILED, reason="executor raised")
        guard.release(reservation)


def record_executor_failure(state, pair: Pair, exc: BaseException) -> bool:
    """Record an executor that raised; True when orders may exist (the pair stays open, the coin paused)."""
    try:
        pair.refresh_from_db()
        if not pair.orders.exists():  # nothing recorded, so nothing was sent
            Pair.objects.filter(pk=pair.pk).update(state=Pair.State.FAILED, stage=Pair.Stage.CLOSED, lease_until=None,
                                                   note=f"executor raised before sending: {type(exc).__name__}"[:300])
            return False
        reason = f"pair {pair.id}: executor raised {type(exc).__name__} with orders that may exist"
        Pair.objects.filter(pk=pair.pk).update(lease_until=None, note=f"UNRESOLVED: {reason}"[:300])
        lg.record(lg.Block("leg_risk", reason), pair.symbol)
        pause_symbol(state, pair.symbol, reason=f"{PAUSE_PREFIX}{pair.id}: executor raised"[:200])
    except Exception:  # noqa: BLE001 — the original failure is what the caller must see
        log.exception("could not record the failure of pair %s", pair.id)
    return True


sync_exposure = positions.sync_exposure


def signal_fields(o: Opportunity) -> dict:
    """An opportunity as the Signal row stores it."""
    return dict(symbol=o.symbol, buy_exchange=o.buy_exchange, sell_exchange=o.sell_exchange, buy_price=money(o.buy_price),
                sell_price=money(o.sell_price), quantity=o.quantity, spread=money(o.spread), spread_pct=money(o.spread_pct),
                net_spread_pct=money(o.net_spread_pct), fx_rate=o.fx_rate)


def record_signal(o: Opportunity, outcome: str, reason: str, now: datetime) -> Signal:
    return Signal.objects.create(**signal_fields(o), outcome=outcome, reason=reason[:300], detected_at=now)
