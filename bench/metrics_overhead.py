"""Tick -> signal p99 with the metrics on versus off (issue 13: overhead at most 5 %).

    .venv/bin/python bench/metrics_overhead.py --coins 20 --step-hz 5 --seconds 8 --rounds 2

Two measurements:
* end to end: bench/signal_latency.py's run (venue, feeds, dispatcher, a Celery worker, all separate
  processes), alternately with METRICS_ENABLED=false and with METRICS_ENABLED=true and a
  PROMETHEUS_MULTIPROC_DIR, so that every instrument writes its files as in production;
* the instruments alone, in multiprocess mode: what one evaluation that makes a signal adds
  (observe_tick_to_signal, count_evaluations, count_signal), in microseconds, against the p99.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._harness import PY, ROOT  # noqa: E402
from bench.signal_latency import run  # noqa: E402

INSTRUMENTS = """
import time, django
django.setup()
from trading import telemetry
n = {n}
for _ in range(1000):
    telemetry.observe_tick_to_signal(0.004); telemetry.count_evaluations(1); telemetry.count_signal()
start = time.perf_counter()
for _ in range(n):
    telemetry.observe_tick_to_signal(0.004); telemetry.count_evaluations(1); telemetry.count_signal()
print((time.perf_counter() - start) / n * 1e6)
"""


def instruments_us(n: int = 50_000) -> float:
    """Microseconds the per-evaluation instruments cost in multiprocess mode."""
    directory = tempfile.mkdtemp(prefix="kimp-bench-metrics-")
    try:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory, "DJANGO_SETTINGS_MODULE": "arbproject.settings",
               "METRICS_ENABLED": "true"}
        out = subprocess.run([PY, "-c", INSTRUMENTS.format(n=n)], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def measure(enabled: bool, args) -> dict:
    directory = tempfile.mkdtemp(prefix="kimp-bench-metrics-") if enabled else None
    saved = {k: os.environ.get(k) for k in ("METRICS_ENABLED", "PROMETHEUS_MULTIPROC_DIR")}
    os.environ["METRICS_ENABLED"] = "true" if enabled else "false"
    if directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    else:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    try:
        return run(args.coins, args.step_hz, args.seconds, "solo", 1, args.hot)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if directory:
            shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coins", type=int, default=20)
    parser.add_argument("--step-hz", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--hot", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs, alternated (the machine's noise)")
    args = parser.parse_args()
    results: dict[bool, list[dict]] = {False: [], True: []}
    print(f"{'metrics':>8} {'signals':>8} {'sig p50':>8} {'sig p99':>8} {'fill p99':>8}   (ms)")
    for _ in range(args.rounds):
        for enabled in (False, True):
            r = measure(enabled, args)
            results[enabled].append(r)
            print(f"{'on' if enabled else 'off':>8} {r['signals']:>8} {r['s50']:>8.2f} {r['s99']:>8.2f} {r['f99']:>8.2f}", flush=True)
    off = statistics.median(r["s99"] for r in results[False])
    on = statistics.median(r["s99"] for r in results[True])
    cost = instruments_us()
    print(f"tick->signal p99, median of {args.rounds} rounds: off {off:.2f} ms, on {on:.2f} ms, "
          f"difference {(on - off) / off:+.1%}")
    print(f"instruments per signalling evaluation (multiprocess mode): {cost:.2f} us = {cost / 1000 / off:.3%} of the p99")


if __name__ == "__main__":
    main()
