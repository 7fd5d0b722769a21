"""The Celery application, its beat schedule, and the start-up checks of the worker and of beat."""

import logging
import os

from celery import Celery
from celery.schedules import crontab
from celery.signals import beat_init, worker_init, worker_ready
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arbproject.settings")

app = Celery("arbproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Queues (docs/architecture.md): evaluations are never queued behind an execution. A worker started
# without -Q consumes them all (tests, a one-box demo); in production each has its own workers, on as
# many machines as needed, through the same broker and database:
#   celery -A arbproject worker -Q evaluate -P solo -n eval1@%h      # batched screens, pure CPU
#   celery -A arbproject worker -Q pairs -c 2 -n pairs1@%h           # pair execution, exits, resume
#   celery -A arbproject worker -Q celery,notify -c 1 -n ops1@%h     # beat's housekeeping, notifications
EVALUATE, PAIRS, HOUSEKEEPING, NOTIFY = "evaluate", "pairs", "celery", "notify"
app.conf.task_default_queue = HOUSEKEEPING
app.conf.task_queues = [Queue(name) for name in (EVALUATE, PAIRS, HOUSEKEEPING, NOTIFY)]
app.conf.task_routes = {
    "trading.tasks.evaluate_changed": {"queue": EVALUATE},
    # Everything that sends orders: a pair, a stop-loss or take-profit exit, resume, flatten, reconciliation.
    "trading.tasks.execute_pair": {"queue": PAIRS},
    "trading.tasks.check_positions": {"queue": PAIRS},
    "trading.tasks.resume_pairs": {"queue": PAIRS},
    "trading.tasks.flatten_positions": {"queue": PAIRS},
    "trading.tasks.reconcile_venues": {"queue": PAIRS},
    # Alerts are watched and sent on their own queue and worker: a slow or failing channel never holds
    # up a trading task, and a stuck trading worker is still reported.
    "liveguard.tasks.*": {"queue": NOTIFY},
    "trading.alerting.watch_alerts": {"queue": NOTIFY},
    "trading.alerting.daily_summary": {"queue": NOTIFY},
}

# Signals are evaluated on ticks (the dispatcher), not on this schedule.
app.conf.beat_schedule = {
    "metrics": {"task": "trading.tasks.publish_metrics", "schedule": 1.0, "options": {"expires": 2}},
    # The database's kill switch, pauses, trade counters and exposure re-mirrored into Redis.
    "guard-mirror": {"task": "trading.tasks.mirror_guard_state", "schedule": 1.0, "options": {"expires": 2}},
    "positions": {"task": "trading.tasks.check_positions", "schedule": 1.0, "options": {"expires": 2}},
    "market-warnings": {"task": "trading.tasks.refresh_market_warnings", "schedule": 60.0},
    "volatility-refit": {"task": "trading.tasks.refit_volatility", "schedule": 300.0},
    "equity-snapshot": {"task": "trading.tasks.snapshot_equity", "schedule": 60.0, "options": {"expires": 60}},
    "rebalance": {"task": "trading.tasks.rebalance_inventory", "schedule": 30.0, "options": {"expires": 30}},
    "resume-pairs": {"task": "trading.tasks.resume_pairs", "schedule": 5.0, "options": {"expires": 5}},
    "reconcile": {"task": "trading.tasks.reconcile_venues", "schedule": 60.0, "options": {"expires": 60}},
    "reference-fx": {"task": "trading.tasks.refresh_reference_fx", "schedule": 5.0, "options": {"expires": 5}},
    # Alerts (trading/alerting.py): a snapshot every 2 s; the day's summary at 00:00 KST, which is
    # 15:00 UTC (CELERY_TIMEZONE is UTC; Korea keeps no daylight saving time).
    "watch-alerts": {"task": "trading.alerting.watch_alerts", "schedule": 2.0, "options": {"expires": 2}},
    "daily-summary": {"task": "trading.alerting.daily_summary", "schedule": crontab(hour=15, minute=0),
                      "options": {"expires": 3600}},
}


# --- start-up: fail closed before the first task --------------------------------------------
# Celery logs and swallows an Exception raised by a signal handler, so a refusal is a SystemExit.
log = logging.getLogger(__name__)


def assert_safe_to_start(process: str) -> None:
    """Refuse to start a worker or beat in live mode without keys, the confirmation and a real
    secret key (reads settings only: it works before Django's apps are set up)."""
    from django.core.exceptions import ImproperlyConfigured

    from liveguard.checks import assert_live_mode_safe

    try:
        assert_live_mode_safe()
    except ImproperlyConfigured as exc:
        log.critical("%s not started: %s", process, exc)
        raise SystemExit(f"{process} not started: {exc}") from exc


def mirror_at_start() -> None:
    """Mirror the database's guard state into Redis before trading. A failure is logged: a
    reservation that finds Redis not mirrored runs the mirror itself, and beat runs it every second."""
    try:
        from django.apps import apps

        if not apps.ready:
            import django

            django.setup()
        from liveguard.services import mirror_guard_state

        mirror_guard_state()
    except Exception:
        log.exception("guard state not mirrored at start-up")


@worker_init.connect
def _worker_init(**kwargs):
    assert_safe_to_start("worker")


@worker_ready.connect
def _worker_ready(**kwargs):
    mirror_at_start()


@beat_init.connect
def _beat_init(**kwargs):
    assert_safe_to_start("beat")
    mirror_at_start()
