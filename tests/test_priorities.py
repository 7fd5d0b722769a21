"""make demo's CPU priorities take effect between processes that lead their own sessions."""

import os
import subprocess
from pathlib import Path

from infra.demo import HOUSEKEEPING_NICE, REALTIME_PRIORITY, TRADING_NICE, set_priority


def _started(nice: int) -> subprocess.Popen:
    return subprocess.Popen(["sleep", "30"], start_new_session=True, preexec_fn=lambda: set_priority(nice))


def test_a_housekeeping_process_runs_lower_and_so_does_its_autogroup():
    proc = _started(HOUSEKEEPING_NICE)
    try:
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == HOUSEKEEPING_NICE
        autogroup = Path(f"/proc/{proc.pid}/autogroup")
        if autogroup.exists():  # Linux with autogroups: the session's weight is what the scheduler compares
            assert autogroup.read_text().split()[-1] == str(HOUSEKEEPING_NICE)
    finally:
        proc.kill()
        proc.wait()


def test_the_hot_path_runs_higher_only_where_the_os_allows_it():
    proc = _started(TRADING_NICE)
    try:
        allowed = os.geteuid() == 0  # (or CAP_SYS_NICE)
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == (TRADING_NICE if allowed else 0)
    finally:
        proc.kill()
        proc.wait()


def test_redis_started_by_the_demo_runs_real_time_where_the_os_allows_it():
    """make demo starts Redis at SCHED_FIFO (every hop of a tick waits on it); the Python processes of
    the hot path promote their own threads, on a budget (tests/marketdata/test_realtime.py)."""
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True,
                            preexec_fn=lambda: set_priority(TRADING_NICE, REALTIME_PRIORITY))
    try:
        allowed = os.geteuid() == 0  # (or CAP_SYS_NICE and a real-time budget)
        assert os.sched_getscheduler(proc.pid) == (os.SCHED_FIFO if allowed else os.SCHED_OTHER)
    finally:
        proc.kill()
        proc.wait()

