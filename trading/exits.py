"""Closing positions: stop-loss and take-profit on the mark, and the kill switch's flatten."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR

from django.conf import settings

from liveguard import guard as lg
from liveguard.services import pause_symbol

from . import engine, positions, strategies
from .execution import PairRequest, held_lock
from .models import Pair, Position
from .state import StateManager

log = logging.getLogger(__name__)


def close_position(state: StateManager, symbol: str, reason: str, executor=None) -> Pair | None:
    """Send the reverse pair for a coin's whole position; None when there is nothing to close."""
    token = state.acquire_lock(f"symbol:{symbol}", settings.SIGNAL_LOCK_MS)
    if token is None:
        return None
    try:
        position = Position.objects.filter(symbol=symbol).first()
        upbit, binance, _ = state.get_market(symbol, engine.FX_KEY)
        fx = engine.fx_rate(state)
        if position is None or upbit is None or binance is None or fx is None:
            return None
        step = engine.lot_step(state, symbol)
        quantity = (position.quantity / step).to_integral_value(rounding=ROUND_FLOOR) * step
        if quantity <= 0:
            return None
        buy_exchange, sell_exchange = position.sell_exchange, position.buy_exchange
        books = {"upbit": upbit, "binance": binance}
        # As on entries: no close on a stale book (nothing this tick; one guard event every few seconds).
        stale = lg.Guard(state, engine.current_limits(state)).check_quotes(
            books[buy_exchange].timestamp, books[sell_exchange].timestamp, datetime.now(UTC))
        if stale is not None:
            if engine.should_record_rejection(state, symbol, f"close_{stale.check}"):
                lg.record(lg.Block(stale.check, f"close waits: {stale.reason}", stale.detail), symbol)
            return None
        request = PairRequest(symbol, buy_exchange, sell_exchange, quantity, books[buy_exchange].asks[0][0],
                              books[sell_exchange].bids[0][0], fx.rate, step)
        pair = Pair.objects.create(symbol=symbol, kind=Pair.Kind.CLOSE, buy_exchange=buy_exchange,
                                   sell_exchange=sell_exchange, mode="live" if settings.LIVE_MODE else "paper",
                                   note=reason[:300])
        executor = executor or engine.default_executor(state, engine.fees())
        try:
            with held_lock(state, f"symbol:{symbol}", token, settings.SIGNAL_LOCK_MS):
                pair = executor.execute(pair, request)  # the closing fills and the smaller position commit together
        except BaseException as exc:
            engine.record_executor_failure(state, pair, exc)
            raise
        executor.publish(pair)
        remaining = Position.objects.filter(symbol=symbol).first()
        engine.sync_exposure(state, symbol, remaining)
        positions.publish(state, remaining, symbol)
        if pair.stage != Pair.Stage.CLOSED:
            log.error("close of %s unresolved: %s", symbol, pair.note)
            return pair
        log.info("closed %s %s: %s", symbol, quantity, reason)
        return pair
    finally:
        state.release_lock(f"symbol:{symbol}", token)


def check_positions(state: StateManager) -> list[str]:
    """Mark every position; close those past stop-loss or take-profit, or (convergence coins) back
    near the premium's mean. A stop-loss starts the coin's cool-down. Returns the coins closed."""
    limits = engine.current_limits(state)
    fx = engine.fx_rate(state)
    closed = []
    if fx is None:
        return closed
    for position in Position.objects.all():
        upbit, binance, _ = state.get_market(position.symbol, engine.FX_KEY)
        if upbit is None or binance is None:
            continue
        m = positions.mark(position, upbit, binance, fx.rate, engine.fees())
        positions.publish(state, position, position.symbol, m)
        reason, stopped = None, False
        strategy = strategies.for_symbol(position.symbol)
        if strategy.name == "inventory":
            continue  # squared by the rebalancer's transfers, never by a reverse pair
        if m.close_buy_price is not None and m.pnl_pct <= -limits.stop_loss_pct:
            reason, stopped = f"stop-loss at {m.pnl_pct:.3f}% (limit -{limits.stop_loss_pct}%)", True
        elif strategy.name == "convergence" and m.close_buy_price is not None:
            premium = state.get_premium(position.symbol)
            deviation = premium and strategies.convergence_exit(
                strategy, state.premium_history(position.symbol), premium.premium_pct, position.side)
            if deviation is not None and deviation is not False:
                reason = f"premium back within {strategy.exit_deviation_pct}% of its mean ({deviation:.3f}%)"
        elif m.close_buy_price is not None and m.pnl_pct >= limits.take_profit_pct:
            reason = f"take-profit at {m.pnl_pct:.3f}% (target {limits.take_profit_pct}%)"
        if stopped and limits.stop_loss_cooldown:
            # Before the close: no evaluation may re-enter between the close and the cool-down.
            until = datetime.now(UTC) + timedelta(seconds=limits.stop_loss_cooldown)
            pause_symbol(state, position.symbol, reason=f"cool-down after {reason}", until=until)
        if reason and close_position(state, position.symbol, reason):
            closed.append(position.symbol)
    return closed


def flatten_all(state: StateManager) -> list[str]:
    """Close every open position with reverse pairs (the kill switch's second action)."""
    started = datetime.now(UTC)
    closed = [symbol for symbol in Position.objects.values_list("symbol", flat=True)
              if close_position(state, symbol, f"flatten requested at {started.isoformat()}")]
    return closed


def reconcile_exposure(state: StateManager) -> dict[str, int]:
    """Make the guard's exposure counters in Redis agree with the positions in the database.

    Redis can outlive the database (or lose keys); the ledger is the truth. Each coin is fixed
    under its trading lock, so a reservation in flight is never overwritten.
    """
    fixed = {}
    positions = {p.symbol: p for p in Position.objects.all()}
    for symbol in set(state.exposure_symbols()) | set(positions):
        token = state.acquire_lock(f"symbol:{symbol}", settings.SIGNAL_LOCK_MS)
        if token is None:
            continue  # being traded right now; the trade sets it
        try:
            position = Position.objects.filter(symbol=symbol).first()
            before = state.exposure(symbol)
            engine.sync_exposure(state, symbol, position)
            after = state.exposure(symbol)
            if after != before:
                fixed[symbol] = after
                log.warning("exposure of %s was %s KRW in Redis, %s KRW in the ledger; corrected", symbol, before, after)
        finally:
            state.release_lock(f"symbol:{symbol}", token)
    return fixed
