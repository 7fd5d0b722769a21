from celery import shared_task
from django.conf import settings

from .state import StateManager


@shared_task(ignore_result=True, soft_time_limit=4, time_limit=5)
def beat_heartbeat() -> None:
    """Record that beat scheduled and a worker ran a task just now."""
    state = StateManager.from_url(settings.REDIS_URL)
    state.beat("beat")
    state.beat("worker")
