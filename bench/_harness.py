"""Shared pieces of the benchmarks: private Redis, subprocesses, CPU accounting, percentiles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import PrivateRedis, free_port  # noqa: F401  (re-exported)

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")


def start_redis() -> tuple[PrivateRedis, str]:
    server = PrivateRedis().start()
    return server, server.url


def spawn(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([PY, "manage.py", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if isinstance(proc, PrivateRedis):
            proc.cleanup()
        elif proc.poll() is None:
            proc.terminate()
    for proc in procs:
        if isinstance(proc, PrivateRedis):
            continue
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
