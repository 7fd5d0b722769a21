"""Real-time CPU priority for a tick's hot path, on a budget so it never starves the rest.

A tick passes through several processes (feed, Redis, evaluate worker) on a box that also runs the
pair workers, housekeeping, the dashboard and the database. Under the normal scheduler a woken hot
process can wait milliseconds for a core behind any of them, at every hop; niceness only shares the
CPU out over time. Under SCHED_FIFO a woken thread takes a core at once from any normal thread, so a
tick waits only for the other hot threads (measured with bench/capacity.py; docs/architecture.md).

A real-time thread that keeps running would starve every normal one, the pair workers and the kill
switch's page among them. So each promoted thread keeps a budget: once it has used more than
`max_share` of a core over `over_windows` windows of `window_s` in a row, it is put back on the
normal scheduler (its niceness unchanged) for `cooldown_s`, with a warning, then promoted again. (One
window over is not enough: a feed catching up after the host stalled it works hard for a moment, and
that is when its priority matters most; a thread that spins stays over.) A hot path that keeps up stays well
under it (a feed at 3,000 updates/s uses about 0.3 of a core, at 6,000 about 0.45); one that is
behind competes like any other process until it has caught up. The budget bounds each thread, not
their sum: it stops a thread gone wrong, it does not divide the box. The kernel's own real-time throttling
(sched_rt_runtime_us, 95 % by default) is the backstop for a thread that never returns to its loop.

The policy is per thread on Linux: `start()` promotes the calling thread (threads it starts later
inherit it) and `check()` must be called from that thread's loop.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# Low among real-time priorities: above every normal thread, below the kernel's own real-time threads.
DEFAULT_PRIORITY = 10
DEFAULT_MAX_SHARE = 0.6
WINDOW_S = 1.0
OVER_WINDOWS = 2
COOLDOWN_S = 5.0


def _set_policy(realtime: bool, priority: int) -> None:
    if realtime:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    else:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


class RealtimeBudget:
    """The calling thread at SCHED_FIFO `priority` while it keeps to `max_share` of a core."""

    OFF, REALTIME, DEMOTED = "off", "realtime", "demoted"

    def __init__(self, priority: int, *, max_share: float = DEFAULT_MAX_SHARE, window_s: float = WINDOW_S,
                 over_windows: int = OVER_WINDOWS, cooldown_s: float = COOLDOWN_S, name: str = "", clock: Callable[[], float] = time.monotonic,
                 cpu: Callable[[], float] = time.thread_time, set_policy: Callable[[bool, int], None] = _set_policy):
        if not 0 < max_share <= 1:
            raise ValueError(f"max_share must be in (0, 1], not {max_share}")
        self.priority = priority
        self.max_share = max_share
        self.window_s = window_s
        self.over_windows = max(1, over_windows)
        self.cooldown_s = cooldown_s
        self.name = name or "this thread"
        self.clock, self.cpu, self.set_policy = clock, cpu, set_policy
        self.state = self.OFF
        self.demotions = 0
        self._over = 0  # windows over budget in a row
        self._window_at = self._window_cpu = 0.0
        self._until = 0.0  # while demoted: when it is promoted again

    def start(self) -> bool:
        """Promote the calling thread; False (and off for good) when the priority is 0 or the OS refuses."""
        if self.priority <= 0:
            return False
        try:
            self.set_policy(True, self.priority)
        except (OSError, AttributeError) as exc:  # no CAP_SYS_NICE, no real-time budget, not Linux
            log.info("%s stays at normal priority: real-time scheduling refused (%s)", self.name, exc)
            return False
        self.state = self.REALTIME
        self._open_window()
        log.info("%s runs at real-time priority %d (at most %.0f%% of a core)", self.name, self.priority, self.max_share * 100)
        return True

    def check(self) -> None:
        """From the promoted thread's loop: demote it if its last window was over budget, promote it
        again once the cooldown has passed. Costs one clock read until a window ends."""
        if self.state == self.OFF:
            return
        now = self.clock()
        if self.state == self.DEMOTED:
            if now >= self._until:
                try:
                    self.set_policy(True, self.priority)
                except OSError:
                    return  # try again at the next check
                self.state = self.REALTIME
                self._open_window()
            return
        elapsed = now - self._window_at
        if elapsed < self.window_s:
            return
        share = (self.cpu() - self._window_cpu) / elapsed
        self._over = self._over + 1 if share > self.max_share else 0
        if self._over >= self.over_windows:
            try:
                self.set_policy(False, 0)
            except OSError:
                log.exception("%s could not leave real-time priority", self.name)
                return
            self.state = self.DEMOTED
            self.demotions += 1
            self._over = 0
            self._until = now + self.cooldown_s
            log.warning("%s used %.0f%% of a core at real-time priority (budget %.0f%%): normal priority for %.0f s",
                        self.name, share * 100, self.max_share * 100, self.cooldown_s)
            return
        self._open_window()

    def _open_window(self) -> None:
        self._window_at, self._window_cpu = self.clock(), self.cpu()


def from_settings(name: str) -> RealtimeBudget:
    """The budget the settings give a hot-path thread (REALTIME_PRIORITY 0, the default, is off)."""
    from django.conf import settings

    return RealtimeBudget(settings.REALTIME_PRIORITY, max_share=min(1.0, settings.REALTIME_MAX_CPU_SHARE), name=name)


def set_process_realtime(pid: int, priority: int = DEFAULT_PRIORITY) -> bool:
    """Put a process's main thread (0: the caller's; Redis, started by a supervisor) at real-time
    priority; False where the OS refuses. Redis's budget is its clients' requests; the kernel's
    throttling is the backstop."""
    try:
        os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, AttributeError):
        return False
    return True


def settle_heap() -> None:
    """Collect once, then move every object alive now out of the collector's sight (gc.freeze). A full
    collection walks every object a process holds: 70-90 ms for an evaluate worker's Django and Celery
    heap on this box, 13-15 ms for a feed's, a stall of the hot path whenever one came (measured with
    gc.callbacks under bench/capacity.py). After this, a full collection walks only what the process
    allocated since. For a hot path's process once it has loaded what it runs on; nothing frozen is
    ever freed, so not for a process that still builds and drops large structures."""
    gc.collect()
    gc.freeze()
