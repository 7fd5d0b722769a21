"""Celery tasks of the notifications: delivery on its own queue (CELERY_TASK_ROUTES), so the trading loop never waits on it."""

from celery import shared_task
from django.conf import settings
from django.db import transaction

from . import notify


@shared_task(ignore_result=True, autoretry_for=(notify.DeliveryError,), retry_backoff=2,
             retry_backoff_max=60, retry_jitter=False, max_retries=max(settings.NOTIFY_MAX_ATTEMPTS - 1, 0),
             soft_time_limit=20, time_limit=30)
def deliver(notification_id: int) -> str:
    """Send one notification; a failed attempt is retried with backoff until NOTIFY_MAX_ATTEMPTS."""
    return notify.deliver(notification_id)


def enqueue(notification_ids: list[int]) -> None:
    """Hand the notifications to the notify queue once the rows that name them are committed."""
    for notification_id in notification_ids:
        transaction.on_commit(lambda nid=notification_id: deliver.delay(nid))
