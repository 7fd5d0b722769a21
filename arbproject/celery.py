"""The Celery application and its beat schedule."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arbproject.settings")

app = Celery("arbproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Signals are evaluated on ticks (the dispatcher), not on this schedule.
app.conf.beat_schedule = {
    "metrics": {"task": "trading.tasks.publish_metrics", "schedule": 1.0, "options": {"expires": 2}},
    "positions": {"task": "trading.tasks.check_positions", "schedule": 1.0, "options": {"expires": 2}},
    "market-warnings": {"task": "trading.tasks.refresh_market_warnings", "schedule": 60.0},
    "volatility-refit": {"task": "trading.tasks.refit_volatility", "schedule": 300.0},
    "reconcile": {"task": "trading.tasks.reconcile_venues", "schedule": 60.0, "options": {"expires": 60}},
    "reference-fx": {"task": "trading.tasks.refresh_reference_fx", "schedule": 5.0, "options": {"expires": 5}},
}
