"""What the alerts watch, observed from trading's state, and the two beat tasks that watch it.

Observation, not hooks: nothing in the trading path calls in here. Every two seconds beat runs
`watch_alerts`, which takes a snapshot (the kill switch, the breaker, heartbeats, reconciliation,
unhedged pairs, the day's loss, notifications that failed) and hands it to liveguard's policy; the notify queue sends what
opened or resolved. At 00:00 KST `daily_summary` reports the day that ended.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from celery import shared_task
from django.conf import settings
from django.db import IntegrityError
from django.db.models import Count, Q, Sum

from liveguard import alerts, notify
from liveguard.guard import start_of_trading_day
from liveguard.models import GuardLimits, KillSwitch
from liveguard.tasks import enqueue

from . import engine
from .accounting import baseline
from .models import Pair
from .state import StateManager

log = logging.getLogger(__name__)

# Seconds without a heartbeat before it is an incident: longer than /health's thresholds, so a
# hiccup shows on /health but only a real outage pages someone.
HEARTBEAT_STALE_S = {"feed_upbit": 15.0, "feed_binance": 15.0}
COMPONENT_STALE_S = 45.0
ZERO = Decimal(0)


def observe(state: StateManager, now: datetime | None = None) -> alerts.Observation:
    """A snapshot of everything the alerts watch; the database for the controls, Redis for the rest."""
    now = now or datetime.now(UTC)
    switch = KillSwitch.load()
    breaker = state.breaker()
    beats = state.heartbeats()
    metrics = state.get_metrics()
    ok, detail = _reconciliation(state)
    return alerts.Observation(
        at=now, kill_switch=switch.engaged, kill_reason=switch.reason, breaker=breaker[0] if breaker else None,
        heartbeat_ages={c: (now - seen).total_seconds() if seen else None for c, seen in beats.items()},
        heartbeat_stale_after={c: HEARTBEAT_STALE_S.get(c, COMPONENT_STALE_S) for c in beats},
        reconciliation_ok=ok, reconciliation_detail=detail, leg_risk=unhedged_pairs(now),
        pnl_today=metrics.pnl_today if metrics else None, max_daily_loss=GuardLimits.load().max_daily_loss,
        undelivered=notify.undelivered(now))


def _reconciliation(state: StateManager) -> tuple[bool | None, str]:
    """(ok, what is wrong); None in paper mode, where the ledger is the venue."""
    if not settings.LIVE_MODE:
        return None, ""
    report = state.reconciliation()
    if report is None:
        return False, "not run yet"
    if report.get("stale"):
        return False, f"stale: last checked {report.get('checked_at')}"
    if not report.get("ok"):
        return False, "; ".join(map(str, report.get("differences") or []))[:500] or "ledger and venues disagree"
    return True, ""


def unhedged_pairs(now: datetime) -> dict[str, str]:
    """Pairs whose exposure is named and unsettled (flagged), or still sending past the leg-risk bound."""
    overdue = now - timedelta(seconds=settings.LEG_RISK_AFTER_S)
    pairs = Pair.objects.filter(Q(stage=Pair.Stage.FLAGGED) |
                                Q(stage__in=[Pair.Stage.SENDING, Pair.Stage.UNWINDING], created_at__lt=overdue))
    return {str(p.id): f"{p.symbol} {p.buy_exchange}->{p.sell_exchange} {p.stage}: {p.note}".strip()
            for p in pairs.only("id", "symbol", "buy_exchange", "sell_exchange", "stage", "note")}


def status_text(state: StateManager) -> str:
    """The Telegram bot's /status reply."""
    return alerts.describe(observe(state))


def summary(now: datetime | None = None) -> tuple[str, str, str]:
    """(event id, title, body) of the trading day that ended at the last 00:00 (TRADING_DAY_TZ)."""
    end = start_of_trading_day(now)
    start = start_of_trading_day(end - timedelta(hours=12))
    label = start.astimezone(ZoneInfo(settings.TRADING_DAY_TZ)).strftime("%Y-%m-%d")
    pairs = Pair.objects.filter(mode="live" if settings.LIVE_MODE else "paper", created_at__gte=start, created_at__lt=end)
    totals = pairs.aggregate(opened=Count("pk", filter=Q(kind=Pair.Kind.OPEN)), fees=Sum("fees"), net=Sum("net_pnl"))
    first, last = baseline(start), baseline(end)
    if first is not None and last is not None and last.taken_at > first.taken_at:
        pnl = (last.equity - last.flows) - (first.equity - first.flows)
        lines = [f"Equity: {_krw(last.equity)} KRW", f"P&L (equity change less flows): {_krw(pnl)} KRW"]
    else:
        lines = ["Equity: no snapshots over the day"]
    lines += [f"Pairs opened: {totals['opened'] or 0}", f"Fees: {_krw(totals['fees'] or ZERO)} KRW",
              f"Pairs' net P&L: {_krw(totals['net'] or ZERO)} KRW"]
    return f"daily_summary:{label}", f"Daily summary {label} ({settings.TRADING_DAY_TZ})", "\n".join(lines)


def _krw(amount: Decimal) -> str:
    return f"{amount:,.0f}"


@shared_task(ignore_result=True, soft_time_limit=4, time_limit=5)
def watch_alerts() -> int:
    """Turn what changed since the last snapshot into notifications (every 2 s from beat)."""
    try:
        ids = notify.track(observe(engine.get_state()))
    except IntegrityError:
        log.warning("alerts: another watcher recorded the same incident at once; the next snapshot carries on")
        return 0
    enqueue(ids)
    return len(ids)


@shared_task(ignore_result=True, soft_time_limit=20, time_limit=30)
def daily_summary() -> int:
    """Send the summary of the trading day that just ended (00:00 KST from beat), once per day."""
    ids = notify.publish_summary(*summary())
    enqueue(ids)
    return len(ids)
