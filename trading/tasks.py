"""Celery tasks: thin wrappers that take a symbol (or nothing) and call one service."""

import logging

import requests
from celery import shared_task
from django.conf import settings

from arbproject.celery import EVALUATE
from arbproject.logs import log_context

from . import alerting, engine, evaluation, exits, metrics, wiring  # noqa: F401  (alerting: its tasks register with the app)

log = logging.getLogger(__name__)


# A pair's worst case: both legs time out, are looked up, and up to three hedges do the same. The
# limits sit above it and below the pair's lease, so resume never races a worker still on the pair;
# a soft limit that fires mid-pair leaves the pair open for resume (never failed).
PAIR_SOFT_LIMIT_S = 90
PAIR_HARD_LIMIT_S = 100


# A queued pair older than this is dropped with its claim: the next tick asks again on newer books.
PAIR_QUEUE_EXPIRES_S = 10


@shared_task(bind=True, ignore_result=True, soft_time_limit=5, time_limit=10)
def evaluate_changed(self) -> int:
    """Screen every coin that changed since the last batch, and the next batches while changes keep
    coming (queue `evaluate`; the dispatcher keeps one of these queued while changes wait). Taking
    the changes clears the queued flag, so a change that lands during a batch queues exactly one more.
    Only on a worker of the evaluate queue alone does a take that finds nothing wait for the next
    change: elsewhere a pair could be waiting behind it."""
    alone = set(self.app.amqp.queues.consume_from) == {EVALUATE}
    return evaluation.evaluate_while_changing(engine.get_state(), enqueue_pair, lambda rows: record_blocks.apply_async((rows,)),
                                              requeue=lambda: evaluate_changed.apply_async(expires=10), wait=alone,
                                              realtime=wiring.evaluate_realtime() if alone else None)


@shared_task(ignore_result=True)
def record_blocks(rows: list[dict]) -> None:
    """Store the screen's blocks (a rejected signal and a guard event each) off the evaluation path
    (queue `celery`: housekeeping)."""
    evaluation.record_blocks(rows)


def enqueue_pair(symbol: str) -> None:
    execute_pair.apply_async((symbol,), expires=PAIR_QUEUE_EXPIRES_S)


@shared_task(ignore_result=True, soft_time_limit=PAIR_SOFT_LIMIT_S, time_limit=PAIR_HARD_LIMIT_S)
def execute_pair(symbol: str) -> str:
    """Size, check and send the pair of a coin the screen found (queue `pairs`)."""
    state = engine.get_state()
    # Cleared first: an opportunity seen while this pair runs queues exactly one more.
    state.clear_pair_claim(symbol)
    with log_context(coin=symbol):
        return engine.execute_opportunity(symbol, state=state)


@shared_task(ignore_result=True, soft_time_limit=0.9, time_limit=2)
def publish_metrics() -> None:
    """Refresh arbitrage:metrics:live, heartbeats, and the loss circuit breaker."""
    from liveguard.guard import Guard

    state = engine.get_state()
    state.beat("beat")
    state.beat("worker")
    fx = engine.fx_rate(state)
    if fx is None:
        return
    state.sample_fx(fx)
    record = metrics.compute(state, fx.rate)
    state.set_metrics(record)
    state.sample_equity(record.timestamp.timestamp(), record.pnl_total)  # the equity VaR's series (flows excluded)
    metrics.rebalance_suggestions(state, fx.rate)
    Guard(state, engine.current_limits(state)).maybe_trip_breaker(record.total_balance, state.var_budget(),
                                                                  pnl_today=record.pnl_today)


@shared_task(ignore_result=True, soft_time_limit=0.9, time_limit=2)
def mirror_guard_state() -> dict:
    """Re-mirror the guard's database state into Redis (every second from beat): the kill switch,
    the pauses, and after a Redis flush or restart the trade counters and the exposure."""
    from liveguard.services import mirror_guard_state as mirror

    report = mirror(engine.get_state())
    return {"rebuilt": report["rebuilt"], "raised": report["raised"]}


@shared_task(ignore_result=True, soft_time_limit=PAIR_SOFT_LIMIT_S, time_limit=PAIR_HARD_LIMIT_S)
def check_positions() -> list[str]:
    """Mark positions to market; close those past stop-loss or take-profit; reconcile exposure."""
    state = engine.get_state()
    closed = exits.check_positions(state)
    exits.reconcile_exposure(state)
    return closed


@shared_task(ignore_result=True, soft_time_limit=20, time_limit=30)
def snapshot_equity() -> str | None:
    """Keep equity and flows every minute: the daily figures start from the day's first snapshot."""
    from .accounting import current_marks, snapshot

    state = engine.get_state()
    fx = engine.fx_rate(state)
    if fx is None:
        return None
    from . import ledger

    marks = current_marks(state, fx.rate, list(ledger.balances()))
    return str(snapshot(marks).equity)


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60)
def rebalance_inventory() -> int:
    """Live mode with withdrawals allowed: follow transfers in flight, then move coins back where a
    venue ran low (trading/rebalance.py)."""
    from liveguard.models import TransferLimits

    if not settings.LIVE_MODE or not TransferLimits.load().withdrawals_enabled:
        return 0
    from . import accounting, ledger
    from .live import transfer_service
    from .rebalance import rebalance

    state = engine.get_state()
    fx = engine.fx_rate(state)
    if fx is None:
        return 0
    service = transfer_service(state)
    if not service.venues:
        log.warning("withdrawals are switched on but no withdrawal keys are configured: nothing moved")
        return 0
    marks = accounting.current_marks(state, fx.rate, list(ledger.balances()))
    return len(rebalance(state, service, marks))


@shared_task(ignore_result=True, soft_time_limit=600, time_limit=620)
def flatten_positions() -> list[str]:
    return exits.flatten_all(engine.get_state())


@shared_task(ignore_result=True, soft_time_limit=PAIR_SOFT_LIMIT_S, time_limit=PAIR_HARD_LIMIT_S)
def resume_pairs() -> int:
    """Carry on pairs whose worker died or could not settle a leg (their lease ran out)."""
    from .execution import resume_pending

    state = engine.get_state()
    return len(resume_pending(state, engine.default_executor(state, engine.fees())))


@shared_task(ignore_result=True, soft_time_limit=8, time_limit=10)
def refresh_market_warnings() -> int:
    """Read Upbit's caution flags; coins with any flag are refused while block_market_warnings is on."""
    try:
        response = requests.get(f"{settings.UPBIT_REST_URL.rstrip('/')}/v1/market/all", params={"is_details": "true"}, timeout=5)
        response.raise_for_status()
        markets = response.json()
    except (requests.RequestException, ValueError) as exc:
        log.warning("market warnings not refreshed: %s", exc)
        return -1
    flagged = [
        m["market"].split("-", 1)[1]
        for m in markets
        if m["market"].startswith("KRW-")
        and (m.get("market_event", {}).get("warning") or any(m.get("market_event", {}).get("caution", {}).values()))
    ]
    engine.get_state().set_market_warnings(flagged)
    return len(flagged)


@shared_task(ignore_result=True, soft_time_limit=100, time_limit=120)
def refit_volatility() -> dict:
    """Refit the premium risk model: GARCH/EWMA volatility of each coin's premium, weights, and the
    VaR of the premium book and of equity (the breaker's daily budget)."""
    from .quant.service import refit

    result = refit(engine.get_state())
    return {"symbols": len(result["vols"]), "var_95_krw": result["var_95_krw"], "var_source": result["var_source"]}


@shared_task(ignore_result=True, soft_time_limit=4, time_limit=5)
def refresh_reference_fx() -> str | None:
    """Read the second USD/KRW source (FX_REFERENCE_URL) into arbitrage:fx:reference."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from .state import FxRecord

    if not settings.FX_REFERENCE_URL:
        return None
    try:
        response = requests.get(settings.FX_REFERENCE_URL, timeout=3)
        response.raise_for_status()
        quote = response.json()[0]
        rate = Decimal(str(quote["basePrice"]))
    except (requests.RequestException, ValueError, KeyError, IndexError) as exc:
        log.warning("reference USD/KRW not refreshed: %s", exc)
        return None
    engine.get_state().set_fx(FxRecord("reference", rate, None, None, datetime.now(UTC)))
    return str(rate)


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60)
def reconcile_venues() -> bool | None:
    """In live mode, compare the venues with the ledger; trading waits while they disagree."""
    if not settings.LIVE_MODE:
        return None
    from liveguard.checks import assert_live_mode_safe

    assert_live_mode_safe()  # before any adapter exists (default_executor checks again)
    from .live import resume_pending
    from .reconcile import reconcile

    state = engine.get_state()
    executor = engine.default_executor(state, engine.fees())
    resume_pending(state, executor)  # pairs a dead worker left half done are settled first
    return reconcile(state, executor.adapters)["ok"]
