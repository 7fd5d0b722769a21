"""One process of the system under the soak."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from .common import (
    ROOT,
)


class Child:
    """One process of the system, in a process group of its own (so a SIGKILL takes all of it)."""

    def __init__(self, name: str, argv: list[str], env: dict, logdir: Path):
        self.name, self.argv, self.env, self.logdir = name, argv, env, logdir
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.expected_exit = False

    def start(self) -> None:
        self.starts += 1
        log = open(self.logdir / f"{self.name}.log", "ab")  # noqa: SIM115 — handed to the child
        log.write(f"\n=== start {self.starts} at {time.strftime('%H:%M:%S')} ===\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.expected_exit = False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (a worker and its pool child die together, as in a crash)."""
        if self.proc is None:
            return
        self.expected_exit = True
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def terminate(self) -> None:
        if self.alive():
            self.expected_exit = True
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> bool:
        if self.proc is None:
            return True
        try:
            self.proc.wait(max(0.1, timeout))
            return True
        except subprocess.TimeoutExpired:
            return False

    def reap_group(self) -> None:
        """Whatever of its group is left (a pool child whose parent died) goes too."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

