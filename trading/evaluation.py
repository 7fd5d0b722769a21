"""The batched screen: every coin that changed since the last batch, evaluated on the books in Redis.

One task takes the whole set of changed coins with their best levels and the guard's mirror in one
round trip (`StateManager.take_changed`), and for each coin computes the premium and the best opportunity
under its position limit — pure arithmetic on books already in memory, no database. An opportunity
is announced as a signal; if LiveGuard's checks that need only the mirror pass (kill switch,
reconciliation, pause, breaker, quote and FX age, Upbit caution, expected slippage), the coin is
handed to the `pairs` queue, at most one queued pair per coin, where `engine.execute_opportunity`
reads it afresh, sizes it to the ledger's balances and runs every check before any order.
Evaluation never waits behind an execution.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from django.conf import settings

from arbproject.logs import log_context
from liveguard import guard as lg
from marketdata.realtime import RealtimeBudget

from . import engine, telemetry
from .models import Signal
from .signals import Caps, Opportunity
from .state import EvaluationContext, StateManager, keys
from .state.evaluation import BatchResults

log = logging.getLogger(__name__)

# A queued pair's claim lapses by itself if its task is lost (the task expires at the same age).
PAIR_CLAIM_MS = 10_000
# A block is logged at INFO the first time it is seen for a coin, and again after this long.
BLOCK_LOG_EVERY_S = 60.0
_block_logged: dict[tuple[str, str], float] = {}
# An unchanged premium is stored again after this long; coin -> (its values but the time, when stored), per process.
PREMIUM_REFRESH_S = keys.REFRESH_S  # (and a feed marks a coin whose book moved below its best levels as often)
_stored: dict[str, tuple[tuple, float]] = {}
# The coins worth walking in the last few seconds have their full books read with their tops (one round
# trip); another coin's are read when it turns out worth walking. coin -> when it last was, per process.
WALKED_RECENTLY_S = keys.WALKING_S  # the feeds mark such a coin on any change of its books (keys.WALKING_KEY)
# A batch whose oldest change waited longer than this is behind: the next one is taken without
# holding the queued flag, so that another evaluate worker can take a batch beside it.
BEHIND_MS = 20.0
# A batch takes at most this many coins: first the changed coins worth walking lately (near a signal:
# the ones a trader is waiting on), up to half of it, then the oldest changes. When every book moves at
# once (the market moves; when premiums appear), the signals are out after one batch's arithmetic
# (~4 ms), not after the whole market's, and the rest follow batch after batch.
BATCH_MAX_COINS = 32
# The fee rates, limits and strategies a screen uses are re-read from the database in the screen only
# when they are this old (or when an edit bumped the controls' version): the loop re-reads them when a
# take finds nothing, once they are engine.CACHE_AGE_S old, after letting go of the queued flag (a
# change meanwhile queues a task that the other worker takes). A read of the database in a screen,
# every 5 s, was a 10-35 ms stall of the ticks in flight (the slowest signals of the capacity bench).
CACHE_MAX_AGE_S = 30.0
_refreshed_at = float("-inf")  # when this process's loop last re-read them (monotonic)
_walked: dict[str, float] = {}


@dataclass(frozen=True, slots=True)
class BatchResult:
    evaluated: int  # coins with both books and a rate (screened; an unchanged premium is not stored again at once)
    signals: int
    pairs: int  # coins handed to the pairs queue
    oldest_change_ms: float | None  # age of the batch's oldest change when its results were stored


def forget() -> None:
    """Drop what this process remembers of the premiums it stored (tests start from an empty Redis and
    database: the caches are read afresh by the first screen, so the loop's re-read is not due)."""
    global _refreshed_at
    _stored.clear()
    _walked.clear()
    _refreshed_at = time.monotonic()


def evaluate_changed(state: StateManager, enqueue_pair: Callable[[str], object],
                     record: Callable[[list[dict]], object] | None = None) -> BatchResult:
    """Take every coin that changed since the last batch, screen it and store the results (two round
    trips; the task fuses each batch's store with the next one's take: evaluate_while_changing).
    record stores the blocks worth recording (record_blocks, here and now, unless the caller queues them)."""
    changed, contexts = state.take_changed(engine.FX_KEY, _walked_lately())
    return evaluate_batch(state, changed, contexts, enqueue_pair, record)


def evaluate_while_changing(state: StateManager, enqueue_pair: Callable[[str], object],
                            record: Callable[[list[dict]], object] | None = None, *, requeue: Callable[[], object],
                            budget_s: float = 0.5, hold_ms: int = 2000, wait: bool = True,
                            realtime: RealtimeBudget | None = None) -> int:
    """The `evaluate` task: screen batch after batch while changes keep coming and return the coins
    screened. Each batch's results are stored (and its signals announced) in the round trip that takes
    the next batch's changes. The queued flag is held between batches (take_changed's hold_ms), so the
    next batch is taken as soon as one ends, with no dispatcher, broker or task in between. A take
    that finds nothing keeps the flag and waits on the wake list (wait_for_change), where the next
    change's feed leaves a token, until budget_s is spent; a take that finds nothing then clears the
    flag and ends the task. A take takes at most BATCH_MAX_COINS, those worth walking first. A batch
    whose oldest change waited more than BEHIND_MS is taken without holding: the next change queues a
    task that another evaluate worker can run beside this one. After budget_s the task stores what it has and hands over to a new
    one (requeue(), the flag still held), so the worker serves its queue in turn; a worker that dies
    mid-loop leaves a flag that lapses after hold_ms, when the next change queues a task.
    wait=False: the first take that finds nothing ends the task at once (a worker that also serves
    other queues must not park its pool slot waiting for changes, ahead of a pair).
    realtime: this thread's real-time budget, checked once a batch (marketdata/realtime.py)."""
    global _refreshed_at
    deadline = time.monotonic() + budget_s
    total, pending, version = 0, None, None
    while True:
        if realtime is not None:
            realtime.check()
        results = pending.results() if pending else None
        behind = pending is not None and (time.time() - pending.oldest) * 1000 > BEHIND_MS
        # Caches due for a re-read: the next take that finds nothing lets go of the flag first.
        refresh = version is not None and time.monotonic() - _refreshed_at >= engine.CACHE_AGE_S
        linger = wait and not behind and not refresh and time.monotonic() < deadline
        changed, contexts = state.take_changed(engine.FX_KEY, _walked_lately(), hold_ms=None if behind else hold_ms,
                                               linger=linger, limit=BATCH_MAX_COINS, results=results)
        if pending:
            total += pending.finish(results, enqueue_pair, record).evaluated
        pending = screen(state, changed, contexts)
        if contexts:
            version = next(iter(contexts.values())).limits_version
        if pending is None:
            if refresh:  # idle, the flag let go: a change meanwhile goes to the other worker
                engine.refresh_caches(version)
                _refreshed_at = time.monotonic()
            if not linger:
                return total  # that take cleared the flag: the next change queues a task
            # Nothing yet, the flag still held: wait for the next change's token, then take again (at
            # the deadline without lingering: a take that finds nothing then clears the flag and ends).
            state.wait_for_change(deadline - time.monotonic())
            continue
        if time.monotonic() >= deadline:
            done = pending.finish(state.save_results(pending.results()), enqueue_pair, record)
            requeue()
            return total + done.evaluated


def evaluate_batch(state: StateManager, changed: Sequence[tuple[str, float]], contexts: dict[str, EvaluationContext],
                   enqueue_pair: Callable[[str], object], record: Callable[[list[dict]], object] | None = None) -> BatchResult:
    """Screen the changed coins and store the results in one more round trip (screen, then finish)."""
    screened = screen(state, changed, contexts)
    if screened is None:
        return BatchResult(0, 0, 0, None)
    return screened.finish(state.save_results(screened.results()), enqueue_pair, record)


def _walked_lately() -> list[str]:
    clock = time.monotonic()
    return [symbol for symbol, at in _walked.items() if clock - at < WALKED_RECENTLY_S]


@dataclass
class Screened:
    """A batch screened, its results not yet stored."""

    oldest: float  # epoch seconds of its oldest change
    screened: int
    premiums: list
    signals: list
    ready: list[str]  # coins whose opportunity passed the mirror's checks
    blocked: list[tuple[Opportunity, lg.Block]]
    now: datetime
    walking: list[str]  # coins whose top could beat the minimum (the feeds mark them on any change)

    def results(self) -> BatchResults:
        return BatchResults(self.premiums, self.signals, settings.PREMIUM_HISTORY_SECONDS, self.oldest, self.screened,
                            claims=self.ready, claim_ms=PAIR_CLAIM_MS, blocks=[(o.symbol, b.check) for o, b in self.blocked],
                            walking=self.walking)

    def finish(self, stored: BatchResults, enqueue_pair: Callable[[str], object],
               record: Callable[[list[dict]], object] | None) -> BatchResult:
        """After the results are stored: queue the pairs claimed, count, record the first blocks."""
        for symbol in stored.claimed:
            enqueue_pair(symbol)
        telemetry.count_evaluations(self.screened)
        for signal in self.signals:  # announced: the latency a subscriber sees
            telemetry.count_signal()
            if signal.tick_received_at:
                telemetry.observe_tick_to_signal(telemetry.since(signal.tick_received_at))
        _record_blocks(self.blocked, set(stored.first), self.now, record or record_blocks)
        return BatchResult(self.screened, len(self.signals), len(stored.claimed), (time.time() - self.oldest) * 1000)


def screen(state: StateManager, changed: Sequence[tuple[str, float]], contexts: dict[str, EvaluationContext]) -> Screened | None:
    """Screen the changed coins ((coin, epoch seconds of its oldest unevaluated change)) on their
    contexts (best levels only): premiums, and for a coin whose top of book could beat the minimum, its
    walk on the full books, its signal and the mirror's checks. None when nothing changed."""
    if not changed:
        return None
    oldest = min(at for _, at in changed)
    now = datetime.now(UTC)
    premiums, worth_walking = [], []
    screened = 0
    full: dict[str, tuple] = {}
    clock = time.monotonic()
    for symbol, _at in changed:
        ctx = contexts[symbol]
        seen = engine.look(state, symbol, ctx, books=lambda symbol=symbol: full[symbol], max_age=CACHE_MAX_AGE_S)
        if seen is None:
            continue
        screened += 1
        premium = seen.premium_record(now)
        # Most changes move a size, not a best price: the premium is as it was. It is stored again
        # only once it is PREMIUM_REFRESH_S old (its timestamp says how fresh it is, its history is sampled).
        result = (premium.premium_pct, premium.upbit_mid, premium.binance_mid, premium.fx_rate,
                  premium.net_upbit_to_binance, premium.net_binance_to_upbit)
        last = _stored.get(symbol)
        if last is None or last[0] != result or clock - last[1] >= PREMIUM_REFRESH_S:
            premiums.append(premium)
            _stored[symbol] = (result, clock)
        find = seen.finder(state, database=False)
        if find is not None:
            worth_walking.append((seen, ctx, find))
    if worth_walking:
        full.update(state.full_books([seen.symbol for seen, _, _ in worth_walking]))
        for seen, _, _ in worth_walking:
            _walked[seen.symbol] = clock
    signals, ready, blocked = [], [], []
    for seen, ctx, find in worth_walking:
        if None in full[seen.symbol]:
            continue  # a book expired since its top was read
        opportunity = find(lambda _buy, _sell, cap=seen.max_notional: Caps(cap))
        if opportunity is None:
            continue
        signals.append(seen.signal_record(opportunity, now))
        block = pre_trade_block(lg.Guard(state, seen.limits), ctx, opportunity, seen.fx, now)
        if block is None:
            ready.append(seen.symbol)
        else:
            blocked.append((opportunity, block))
    return Screened(oldest, screened, premiums, signals, ready, blocked, now, [seen.symbol for seen, _, _ in worth_walking])


def pre_trade_block(guard: lg.Guard, ctx: EvaluationContext, opportunity: Opportunity, fx, now: datetime) -> lg.Block | None:
    """LiveGuard's checks that the Redis mirror answers, cheapest first. The pair path asks them again
    with the database (the kill switch and the pauses are the database's), then balances, losses and
    the atomic reservation. A mirror that is missing blocks nothing here: the pair path restores it
    from the database before it decides."""
    if ctx.kill_switch:
        return lg.Block("kill_switch", "kill switch engaged")
    if ctx.paused:
        return lg.Block("paused", f"{opportunity.symbol} is paused by an operator")
    return (
        guard.check_reconciled(settings.LIVE_MODE, ctx.reconciled)
        or guard.check_circuit_breaker(ctx.breaker)
        or guard.check_quotes(opportunity.buy_book_time, opportunity.sell_book_time, now)
        or guard.check_fx(fx, now, reference=ctx.reference_fx.rate if ctx.reference_fx else None, previous=ctx.fx_minute_ago)
        or guard.check_market_warning(opportunity.symbol, ctx.market_warning)
        or guard.check_slippage(opportunity)
    )


def _record_blocks(blocked: list[tuple[Opportunity, lg.Block]], first: set[tuple[str, str]], now: datetime,
                   record: Callable[[list[dict]], object]) -> None:
    """A block repeats on every tick: record it (a rejected signal and a guard event) once per few
    seconds per coin and check (`first`: the blocks not recorded in that time), through `record` (the
    task queues them for a housekeeping worker: the screen never waits on the database), and log it at
    INFO when first seen."""
    rows = []
    for opportunity, block in blocked:
        key = (opportunity.symbol, block.check)
        if key not in first:
            continue
        rows.append(block_row(opportunity, block, now))
        seen_at = time.monotonic()
        level = logging.INFO if seen_at - _block_logged.get(key, float("-inf")) >= BLOCK_LOG_EVERY_S else logging.DEBUG
        with log_context(coin=opportunity.symbol):
            log.log(level, "guard blocks %s: %s (%s)", opportunity.symbol, block.check, block.reason)
        _block_logged[key] = seen_at
    if rows:
        record(rows)


def block_row(o: Opportunity, block: lg.Block, now: datetime) -> dict:
    """A block as JSON-safe values: the rejected signal's fields and the guard event's."""
    fields = {name: value if isinstance(value, str) else str(value) for name, value in engine.signal_fields(o).items()}
    return {
        "signal": {**fields, "reason": block.reason[:300], "detected_at": now.isoformat()},
        "check": block.check, "reason": block.reason, "detail": orjson.loads(orjson.dumps(block.detail, default=str)),
    }


def record_blocks(rows: list[dict]) -> None:
    """Store block_row()s: a rejected signal and a guard event each (the housekeeping task)."""
    for row in rows:
        fields = row["signal"]
        Signal.objects.create(**{k: v for k, v in fields.items() if k != "detected_at"}, outcome=Signal.Outcome.REJECTED,
                              detected_at=datetime.fromisoformat(fields["detected_at"]))
        lg.record(lg.Block(row["check"], row["reason"], row["detail"]), fields["symbol"])
