"""Real-time priority for the hot path (marketdata/realtime.py): promoted where allowed, on a CPU
budget that puts an over-busy thread back on the normal scheduler, and wired into the feeds and the
evaluate loop."""

import os
import threading
import time

import pytest

from marketdata import realtime
from marketdata.feeds.run import build_feeds
from marketdata.realtime import RealtimeBudget
from tests.conftest import feed_kwargs

# Real-time scheduling needs root or CAP_SYS_NICE (and, in some containers, a real-time budget).
try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    ALLOWED = True
except OSError:
    ALLOWED = False


class Clocks:
    """A wall clock and this thread's CPU clock that the test moves by hand."""

    def __init__(self):
        self.now = self.cpu = 0.0
        self.policies: list[tuple[bool, int]] = []

    def budget(self, priority=10, **kwargs) -> RealtimeBudget:
        return RealtimeBudget(priority, clock=lambda: self.now, cpu=lambda: self.cpu,
                              set_policy=lambda rt, prio: self.policies.append((rt, prio)), **kwargs)

    def run(self, seconds: float, share: float) -> None:
        self.now += seconds
        self.cpu += seconds * share


def test_a_thread_within_its_budget_stays_real_time():
    clocks = Clocks()
    budget = clocks.budget(max_share=0.4, window_s=1.0)
    assert budget.start() and budget.state == budget.REALTIME
    for _ in range(5):
        clocks.run(0.5, 0.3)
        budget.check()
    assert budget.state == budget.REALTIME and budget.demotions == 0
    assert clocks.policies == [(True, 10)]  # promoted once, never touched again


def test_a_thread_over_its_budget_runs_at_normal_priority_for_the_cooldown_then_is_promoted_again(caplog):
    clocks = Clocks()
    budget = clocks.budget(max_share=0.4, window_s=1.0, over_windows=2, cooldown_s=5.0, name="feed upbit")
    budget.start()
    clocks.run(0.5, 0.9)
    budget.check()  # the window is not over: nothing decided on half a second
    assert budget.state == budget.REALTIME
    clocks.run(0.5, 0.9)
    budget.check()
    assert budget.state == budget.REALTIME  # one window over: a catch-up, perhaps
    clocks.run(1.0, 0.9)
    budget.check()
    assert budget.state == budget.DEMOTED and budget.demotions == 1
    assert clocks.policies[-1] == (False, 0)
    assert "feed upbit used 90% of a core at real-time priority (budget 40%)" in caplog.text
    clocks.run(4.9, 0.0)
    budget.check()
    assert budget.state == budget.DEMOTED  # the cooldown is not over
    clocks.run(0.2, 0.0)
    budget.check()
    assert budget.state == budget.REALTIME and clocks.policies[-1] == (True, 10)
    clocks.run(1.0, 0.1)  # the new window counts from the promotion, not from before the cooldown
    budget.check()
    assert budget.state == budget.REALTIME and budget.demotions == 1


def test_a_busy_window_between_quiet_ones_is_a_catch_up_not_a_demotion():
    clocks = Clocks()
    budget = clocks.budget(max_share=0.4, window_s=1.0, over_windows=2)
    budget.start()
    for share in (0.9, 0.2, 0.9, 0.1, 0.95):
        clocks.run(1.0, share)
        budget.check()
    assert budget.state == budget.REALTIME and budget.demotions == 0


def test_priority_zero_is_off_and_never_touches_the_scheduler():
    clocks = Clocks()
    budget = clocks.budget(priority=0)
    assert not budget.start() and budget.state == budget.OFF
    clocks.run(2.0, 1.0)
    budget.check()
    assert clocks.policies == []


def test_a_refused_promotion_leaves_the_thread_at_normal_priority_for_good(caplog):
    def refuse(_realtime, _priority):
        raise PermissionError(1, "Operation not permitted")

    budget = RealtimeBudget(10, set_policy=refuse, name="evaluate worker")
    assert not budget.start() and budget.state == budget.OFF
    budget.check()  # a no-op, not a retry every burst
    assert "evaluate worker stays at normal priority" in caplog.text


def test_a_budget_out_of_range_is_refused():
    with pytest.raises(ValueError):
        RealtimeBudget(10, max_share=0)
    with pytest.raises(ValueError):
        RealtimeBudget(10, max_share=1.5)


@pytest.mark.skipif(not ALLOWED, reason="real-time scheduling is not allowed here")
def test_a_real_thread_is_promoted_and_a_busy_one_demoted_by_the_kernel_policy():
    seen = {}

    def hot():
        budget = RealtimeBudget(5, max_share=0.5, window_s=0.1, over_windows=1, cooldown_s=60)
        budget.start()
        seen["promoted"] = os.sched_getscheduler(0)
        deadline = time.monotonic() + 0.15
        while time.monotonic() < deadline:  # busy: all of a core
            pass
        budget.check()
        seen["after"] = os.sched_getscheduler(0)
        seen["state"] = budget.state

    thread = threading.Thread(target=hot)
    thread.start()
    thread.join(5)
    assert seen == {"promoted": os.SCHED_FIFO, "after": os.SCHED_OTHER, "state": RealtimeBudget.DEMOTED}
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # per thread: the test's own thread was never touched


@pytest.mark.skipif(not ALLOWED, reason="real-time scheduling is not allowed here")
def test_a_process_started_for_redis_runs_real_time():
    import subprocess

    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert realtime.set_process_realtime(proc.pid, 7)
        assert os.sched_getscheduler(proc.pid) == os.SCHED_FIFO
        assert os.sched_getparam(proc.pid).sched_priority == 7
    finally:
        proc.kill()
        proc.wait()


def test_each_feed_gets_a_budget_of_its_own_from_the_settings(settings, state):
    settings.REALTIME_PRIORITY = 12
    settings.REALTIME_MAX_CPU_SHARE = 0.3
    upbit, binance = build_feeds(["upbit", "binance"], ["BTC"], state)
    assert upbit.realtime is not binance.realtime
    assert (upbit.realtime.priority, upbit.realtime.max_share) == (12, 0.3)
    assert binance.realtime.name == "feed binance"
    settings.REALTIME_PRIORITY = 0  # the default: the feeds never ask for it
    assert build_feeds(["upbit"], ["BTC"], state)[0].realtime.priority == 0


def test_the_feed_promotes_its_own_thread_and_checks_its_budget_every_burst(venue, state):
    """run() promotes the feed's thread before it connects; each step (a burst and its flush) checks."""
    from marketdata.feeds.upbit import UpbitFeed

    class Counting:
        starts = checks = 0

        def start(self):
            self.starts += 1
            self.thread = threading.get_ident()
            return True

        def check(self):
            self.checks += 1

    budget = Counting()
    feed = UpbitFeed(state, ["BTC", "ETH"], **feed_kwargs(venue, "upbit"), realtime=budget)
    thread = threading.Thread(target=feed.run)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while budget.checks < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        feed.stop()
        thread.join(5)
    assert budget.starts == 1 and budget.thread == thread.ident
    assert budget.checks >= 3


def test_a_settled_heap_is_out_of_every_later_full_collection():
    """settle_heap freezes what the process holds (its modules, settings, caches): a later full
    collection walks only what was allocated since, a few ms instead of the 60-90 ms a Django worker's
    whole heap took (a stall of the hot path)."""
    import gc
    import subprocess
    import sys

    code = ("import gc, time, django; from marketdata.realtime import settle_heap; "
            "before = len(gc.get_objects(2)); settle_heap(); "
            "print(before, len(gc.get_objects(2)), gc.get_freeze_count())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout.split()
    before, after, frozen = map(int, out)
    assert frozen >= before > 0 and after < before / 10
    assert gc.get_freeze_count() == 0  # (a fresh interpreter: this test process is never frozen)
