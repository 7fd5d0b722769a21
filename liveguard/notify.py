"""Notifications: incidents recorded, events fanned out to channels, each delivered through apprise.

The watcher (trading/alerting.py) hands an observation to `track`, which keeps the open incidents
in the database and records one event per transition; `fan_out` makes one Notification row per
event and channel (a unique pair: nothing is delivered twice); the notify queue's worker runs
`deliver` for each (liveguard/tasks.py), never the trading loop. A delivery that fails is retried a
bounded number of times and then marked failed, with an ERROR log line and the row in the admin;
one over the channel's rate limit is marked suppressed and counted in that channel's next message.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, unquote, urlsplit

from django.conf import settings
from django.db import transaction

from . import alerts
from .alertstate import AlertState
from .models import AlertEvent, Incident, Notification, NotificationChannel

log = logging.getLogger(__name__)

ENV_PREFIX = "env:"
Status = Notification.Status


class DeliveryError(Exception):
    """A delivery that failed and may succeed when tried again (the task retries it)."""


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    url: str
    kinds: frozenset[str] = frozenset()  # empty: every kind

    def wants(self, kind: str) -> bool:
        return not self.kinds or kind in self.kinds


def mask_url(url: str) -> str:
    """What may be shown of a channel's URL: its scheme only (the rest carries the credentials)."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    return f"{scheme}://•••" if scheme else "•••"


def redact(text: str, url: str) -> str:
    """The text with the URL and each of its parts (user, password, host, path, query values) masked."""
    parts = urlsplit(url)
    secrets = [url, parts.netloc, parts.username, parts.password, parts.hostname,
               *unquote(parts.path).split("/"), *(value for _, value in parse_qsl(parts.query))]
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = re.sub(re.escape(secret), "[redacted]", text)
    return text


def channels() -> list[Channel]:
    """The enabled channels: NOTIFY_URLS (named env:1, env:2, ...) and the admin's."""
    found = [Channel(f"{ENV_PREFIX}{n}", url) for n, url in enumerate(settings.NOTIFY_URLS, start=1)]
    for row in NotificationChannel.objects.filter(enabled=True).order_by("name"):
        found.append(Channel(row.name, row.url, frozenset(row.kinds or ())))
    return found


def undelivered(now: datetime, failed_within_s: int = 900, pending_after_s: int = 120) -> int:
    """Notifications that failed lately, or still wait long after they were queued (no notify worker?)."""
    return (Notification.objects.filter(status=Status.FAILED, updated_at__gte=now - timedelta(seconds=failed_within_s)).count()
            + Notification.objects.filter(status=Status.PENDING, created_at__lt=now - timedelta(seconds=pending_after_s)).count())


def channel(name: str) -> Channel | None:
    return next((c for c in channels() if c.name == name), None)


# --- recording --------------------------------------------------------------------------------------
def track(obs: alerts.Observation) -> list[int]:
    """Record the incidents that opened or resolved since the last snapshot; the new notifications' ids.

    Two watchers at once cannot both open an incident: the open key is unique in the database
    (one of them fails its transaction and the next snapshot carries on).
    """
    with transaction.atomic():
        rows = {row.key: row for row in Incident.objects.select_for_update().filter(resolved_at__isnull=True)}
        open_now = {key: alerts.Incident(row.key, row.kind, row.title, row.body) for key, row in rows.items()}
        events = []
        for change in alerts.transitions(open_now, alerts.incidents(obs, open_now.keys())):
            incident = change.incident
            if change.action == "opened":
                row = Incident.objects.create(key=incident.key, kind=incident.kind, title=incident.title[:200],
                                              body=incident.body, opened_at=obs.at)
            else:
                row = rows[incident.key]
                row.resolved_at = obs.at
                row.save(update_fields=["resolved_at"])
            events.append(AlertEvent.objects.create(event_id=f"{row.key}#{row.pk}:{change.action}", kind=incident.kind,
                                                    action=change.action, title=incident.title[:200],
                                                    body=incident.body, incident=row))
            log.warning("alert %s: %s %s", change.action, incident.title, incident.body)
        return fan_out(events)


def publish_summary(event_id: str, title: str, body: str) -> list[int]:
    """Record the daily summary once per `event_id` (a day); the new notifications' ids."""
    with transaction.atomic():
        event, created = AlertEvent.objects.get_or_create(
            event_id=event_id, defaults={"kind": "daily_summary", "action": "summary", "title": title, "body": body})
        return fan_out([event]) if created else []


def fan_out(events: list[AlertEvent]) -> list[int]:
    """One pending notification per event and interested channel; the ids of those created."""
    targets = channels()
    ids = []
    for event in events:
        for target in targets:
            if target.wants(event.kind):
                row, created = Notification.objects.get_or_create(event=event, channel=target.name)
                if created:
                    ids.append(row.pk)
    return ids


# --- delivery ---------------------------------------------------------------------------------------
def deliver(notification_id: int, hot: AlertState | None = None) -> str:
    """Send one notification (once: a claimed or finished one is left alone); its status after.

    Raises DeliveryError while attempts remain, so the task retries with backoff.
    """
    hot = hot or AlertState.default()
    if not hot.claim_send(notification_id):
        return "claimed"  # another worker is sending it right now
    try:
        return _deliver(Notification.objects.select_related("event").get(pk=notification_id), hot)
    finally:
        hot.release_send(notification_id)


def _deliver(row: Notification, hot: AlertState) -> str:
    if row.status != Status.PENDING:
        return row.status
    target = channel(row.channel)
    if target is None:
        return _fail(row, "the channel is gone or disabled")
    if not hot.take_rate(target.name, settings.NOTIFY_RATE_PER_MINUTE, time.time()):
        log.warning("notification %s to %s suppressed by the rate limit: %s", row.pk, target.name, row.event.title)
        return _finish(row, Status.SUPPRESSED, "over the channel's rate limit")
    row.attempts += 1
    error = send(target.url, row.event.title, _body(row))
    if error is None:
        row.sent_at = datetime.now(UTC)
        return _finish(row, Status.SENT, "")
    if row.attempts >= settings.NOTIFY_MAX_ATTEMPTS:
        return _fail(row, error)
    row.last_error = error[:2000]
    row.save(update_fields=["attempts", "last_error", "updated_at"])
    raise DeliveryError(f"notification {row.pk} to {target.name}: attempt {row.attempts} failed")


def _body(row: Notification) -> str:
    """The event's text, and how many of this channel's notifications the rate limit held back since
    its last delivered one (so the excess is never silently lost)."""
    last_sent = (Notification.objects.filter(channel=row.channel, status=Status.SENT)
                 .order_by("-sent_at").values_list("sent_at", flat=True).first())
    held = Notification.objects.filter(channel=row.channel, status=Status.SUPPRESSED)
    if last_sent is not None:
        held = held.filter(updated_at__gt=last_sent)
    count = held.count()
    body = row.event.body or row.event.title
    return f"{body}\n\n(+{count} more alerts held back by the rate limit: see the admin)" if count else body


def _fail(row: Notification, error: str) -> str:
    log.error("notification %s (%s) to %s failed after %s attempt(s): %s", row.pk, row.event.title, row.channel,
              row.attempts, error)
    return _finish(row, Status.FAILED, error)


def _finish(row: Notification, status: str, error: str) -> str:
    row.status, row.last_error = status, error[:2000]
    row.save(update_fields=["status", "attempts", "last_error", "sent_at", "updated_at"])
    return status


def send(url: str, title: str, body: str) -> str | None:
    """Send through apprise; None when delivered, else the reason (credentials redacted)."""
    import apprise  # here: 19 MB a process, and only the notify worker sends

    sender = apprise.Apprise()
    if not sender.add(url):
        return "not a valid notification URL"
    with apprise.LogCapture(level=logging.WARNING) as captured:
        try:
            delivered = sender.notify(title=title, body=body)
        except Exception as exc:  # noqa: BLE001 — a plugin's own error is a failed delivery, never a crash
            return redact(f"{type(exc).__name__}: {exc}", url)
    if delivered:
        return None
    return redact(captured.getvalue().strip() or "not delivered", url)
