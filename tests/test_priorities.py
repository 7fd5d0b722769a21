"""make demo's CPU priorities take effect between processes that lead their own sessions."""

import os
import subprocess
from pathlib import Path

from infra.demo import HOUSEKEEPING_NICE, TRADING_NICE, set_priority


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
