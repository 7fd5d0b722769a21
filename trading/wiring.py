"""The one place the trading core's long-lived objects are built and handed out.

Per process: the hot state (one StateManager on REDIS_URL), the fee rates and the guard limits
(each cached and re-read when an edit bumped the controls' version), and the pair executor
(paper venues, or the signed live adapters built once). `connect_liveguard` gives LiveGuard what
it needs from this layer (liveguard never imports trading); trading's AppConfig.ready() calls it.
"""

from __future__ import annotations

import time
from functools import lru_cache

from celery import current_app
from django.conf import settings

from liveguard import ports
from liveguard.checks import assert_live_mode_safe
from liveguard.models import GuardLimits
from marketdata import realtime
from marketdata.realtime import RealtimeBudget

from . import fees as fee_schedule
from . import guard_mirror, strategies
from .execution import PairExecutor
from .live import live_executor
from .paper import PaperVenue
from .signals import Fees
from .state import StateManager

FLATTEN_TASK = "trading.tasks.flatten_positions"


@lru_cache(maxsize=1)
def get_state() -> StateManager:
    return StateManager.from_url(settings.REDIS_URL)


@lru_cache(maxsize=1)
def evaluate_realtime() -> RealtimeBudget:
    """An evaluate worker's hot thread at real-time priority (REALTIME_PRIORITY), on its CPU budget:
    promoted by the first evaluate task on a worker of the evaluate queue alone (the solo pool runs
    every task in that one thread), its heap settled (realtime.settle_heap) at the same moment when
    REALTIME_PRIORITY names it a hot path's."""
    budget = realtime.from_settings("evaluate worker")
    budget.start()
    if budget.priority > 0:  # a worker of the hot path (a test's process calling the task is none)
        realtime.settle_heap()  # Django, Celery, the caches the first batch filled: out of every full collection
    return budget


# The fee rates, limits and strategies a process caches are re-read when this old (and at once when an
# edit bumped the controls' version); the screen allows evaluation.CACHE_MAX_AGE_S and refreshes them when idle.
CACHE_AGE_S = 5.0


def fees(state: StateManager | None = None, max_age: float = CACHE_AGE_S, version: int | None = None) -> Fees:
    """The trading account's effective taker rates (FeeSchedule in the admin; trading/fees.py), cached
    like the limits and re-read when an edit bumped the controls' version."""
    if state is None and version is None:
        state = get_state()
    return fee_schedule.current(state, max_age, version)


_limits_cache: tuple[float, int, GuardLimits] | None = None


def current_limits(state: StateManager | None = None, max_age: float = CACHE_AGE_S, version: int | None = None) -> GuardLimits:
    """Limits from the database, re-read when an edit bumped their version (or every few seconds)."""
    global _limits_cache
    now = time.monotonic()
    if version is None:
        version = (state or get_state()).limits_version()
    if _limits_cache is None or _limits_cache[1] != version or now - _limits_cache[0] > max_age:
        _limits_cache = (now, version, GuardLimits.load())
    return _limits_cache[2]


# The (venue, asset) accounts paper mode has funded in this process (engine.ensure_paper_funds).
funded_paper_accounts: set[tuple[str, str]] = set()
_live_executor: PairExecutor | None = None


def forget_limits() -> None:
    """Drop per-process caches (tests start from an empty database)."""
    global _limits_cache, _live_executor
    _limits_cache = None
    _live_executor = None
    funded_paper_accounts.clear()
    fee_schedule.forget()
    strategies.forget()


def default_executor(state: StateManager, fee: Fees) -> PairExecutor:
    """Paper fills unless LIVE_MODE (the system checks insist on keys and an explicit opt-in)."""
    global _live_executor
    if not settings.LIVE_MODE:
        return PairExecutor(state, fee, {name: PaperVenue(name, state, fee) for name in ("upbit", "binance")},
                            mode="paper", slippage=settings.LEG_SLIPPAGE, lease_s=settings.PAIR_LEASE_S,
                            flag_after_s=settings.LEG_RISK_AFTER_S)
    # Fail closed (issue 8.5): no adapter is built while live mode is unsafe, in any process.
    assert_live_mode_safe()
    if _live_executor is None:
        _live_executor = live_executor(state, fee)
    return _live_executor


def request_flatten() -> None:
    """Queue the flatten task by name: the web process need not import the task modules."""
    current_app.send_task(FLATTEN_TASK)


def connect_liveguard() -> None:
    """Hand LiveGuard the hot state, the database's counters, the ledger's quote, the known coins and the flatten."""
    ports.connect(state=get_state, database_counts=guard_mirror.database_counts, quote_balance=guard_mirror.quote_balance,
                  known_symbol=guard_mirror.known_symbol, request_flatten=request_flatten)
