"""Process-local instruments of the trading loop: Prometheus counters and histograms.

Every process (Celery workers, the signal dispatcher, the web) counts what it does itself; with
PROMETHEUS_MULTIPROC_DIR set, prometheus_client keeps the values in files there and GET /metrics
adds them up (dashboard/views.py). Whatever is already in Redis (feed statistics, books, equity,
the kill switch) is not counted here: trading/collector.py reads it at scrape time.

METRICS_ENABLED=false makes every function below return at once (the benchmark's "off").
Callers pass seconds (`time.perf_counter()` differences, or `since(tick_received_at)`); no function
here raises into the trading path.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from functools import wraps

from celery.signals import task_postrun, task_prerun
from django.conf import settings
from prometheus_client import Counter, Histogram

log = logging.getLogger(__name__)

# Fine around 1-50 ms, where tick -> signal lives; coarser beyond for fills and slow evaluations.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025,
                   0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Pairs and legs are round trips to the venues: tens of milliseconds to seconds.
ROUND_TRIP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TASK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Label values known in advance are created at import, so that every series exists (at 0) before the
# first event: a rate over a series that does not exist yet is no data, not zero.
VENUES = ("upbit", "binance")
PAIR_OUTCOMES = ("filled", "partial", "failed", "flagged")

TICK_TO_SIGNAL = Histogram("kimp_tick_to_signal_seconds", "From the feed receiving the newer book to the signal stored",
                           buckets=LATENCY_BUCKETS)
TICK_TO_FILL = Histogram("kimp_tick_to_fill_seconds", "From the feed receiving the newer book to the pair booked",
                         buckets=LATENCY_BUCKETS)
EVALUATIONS = Counter("kimp_evaluations", "Coin evaluations run")
SIGNALS = Counter("kimp_signals", "Signals stored")
PAIRS = Counter("kimp_pairs", "Pairs that reached an end (closed: filled, partial, failed; or flagged)", ["outcome"])
PAIR_SECONDS = Histogram("kimp_pair_seconds", "One pair's execution, legs sent to stage reached", buckets=ROUND_TRIP_BUCKETS)
LEG_SECONDS = Histogram("kimp_leg_seconds", "One order's submit round trip to its venue", ["venue"],
                        buckets=ROUND_TRIP_BUCKETS)
UNWINDS = Counter("kimp_unwinds", "Hedge orders sent to unwind an unequal fill")
DUST = Counter("kimp_dust", "Pairs closed with a remainder below every venue's minimum")
UNKNOWN = Counter("kimp_unknown_outcomes", "Order reports whose outcome is unknown (the order may exist)", ["venue"])
TASK_SECONDS = Histogram("kimp_celery_task_seconds", "Celery task run time, by queue and task", ["queue", "task"],
                         buckets=TASK_BUCKETS)

for _outcome in PAIR_OUTCOMES:
    PAIRS.labels(_outcome)
for _venue in VENUES:
    LEG_SECONDS.labels(_venue)
    UNKNOWN.labels(_venue)


def instrument(record):
    """A no-op with METRICS_ENABLED=false, and never an exception into the trading path (a metric
    that cannot be written is logged; the pair or evaluation that called it carries on)."""

    @wraps(record)
    def guarded(*args, **kwargs) -> None:
        if not settings.METRICS_ENABLED:
            return
        try:
            record(*args, **kwargs)
        except Exception:  # noqa: BLE001 — a metric is never worth a trading failure
            log.exception("metrics: %s failed", record.__name__)

    return guarded


@instrument
def observe_tick_to_signal(seconds: float) -> None:
    """Record the latency from tick to stored signal."""
    TICK_TO_SIGNAL.observe(seconds)


@instrument
def observe_tick_to_fill(seconds: float) -> None:
    """Record the latency from tick to the pair's fills booked."""
    TICK_TO_FILL.observe(seconds)


def since(moment: datetime) -> float:
    """Seconds from an aware datetime (a tick's received_at) to now."""
    return time.time() - moment.timestamp()


@instrument
def count_evaluations(n: int = 1) -> None:
    """Count coin evaluations."""
    EVALUATIONS.inc(n)


@instrument
def count_signal() -> None:
    """Count one stored signal."""
    SIGNALS.inc()


@instrument
def count_pair(outcome: str) -> None:
    """Count a pair that closed (its state) or was flagged."""
    PAIRS.labels(outcome).inc()


@instrument
def observe_pair(seconds: float) -> None:
    """Record one pair's execution time."""
    PAIR_SECONDS.observe(seconds)


@instrument
def observe_leg(venue: str, seconds: float) -> None:
    """Record one order's submit round trip."""
    LEG_SECONDS.labels(venue).observe(seconds)


@instrument
def count_unwind() -> None:
    """Count one hedge order."""
    UNWINDS.inc()


@instrument
def count_dust() -> None:
    """Count a pair closed with dust."""
    DUST.inc()


@instrument
def count_unknown(venue: str) -> None:
    """Count an order report whose outcome is unknown."""
    UNKNOWN.labels(venue).inc()


# --- Celery task latency (connected when the trading app is ready) -------------------------------
_started: dict[str, tuple[float, str]] = {}


@task_prerun.connect
def _task_started(task_id=None, task=None, **_kwargs) -> None:
    if settings.METRICS_ENABLED and task_id:
        info = getattr(task.request, "delivery_info", None) or {}
        _started[task_id] = (time.perf_counter(), info.get("routing_key") or "direct")


@task_postrun.connect
def _task_finished(task_id=None, task=None, **_kwargs) -> None:
    started = _started.pop(task_id, None)
    if started is not None:
        observe_task(started[1], task.name, time.perf_counter() - started[0])


@instrument
def observe_task(queue: str, task: str, seconds: float) -> None:
    """Record one Celery task's run time."""
    TASK_SECONDS.labels(queue, task).observe(seconds)
