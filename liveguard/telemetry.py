"""LiveGuard's own instrument: rejections by check (trading/telemetry.py holds the loop's; this app
may not import trading). Written to PROMETHEUS_MULTIPROC_DIR like the others; a no-op with
METRICS_ENABLED=false."""

from __future__ import annotations

import logging

from django.conf import settings
from prometheus_client import Counter

log = logging.getLogger(__name__)

REJECTIONS = Counter("kimp_guard_rejections", "Guard events recorded (a trade refused or stopped), by check", ["check"])
# The checks that refuse most often exist from the start (at 0), so a rate over them is never "no data".
for _check in ("kill_switch", "circuit_breaker", "daily_loss", "trades_per_hour", "position_size", "stale_quote", "leg_risk"):
    REJECTIONS.labels(_check)


def count_rejection(check: str) -> None:
    """Count one guard event of this check (never raising: the event itself is what matters)."""
    if not settings.METRICS_ENABLED:
        return
    try:
        REJECTIONS.labels(check).inc()
    except Exception:  # noqa: BLE001 — a metric is never worth a lost guard event
        log.exception("metrics: guard rejection not counted")
