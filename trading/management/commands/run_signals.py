"""Dispatch signal evaluations to Celery as books change, until SIGTERM or Ctrl-C."""

import signal

from django.conf import settings
from django.core.management.base import BaseCommand

from marketdata import realtime
from trading.dispatcher import Dispatcher
from trading.state import StateManager
from trading.tasks import evaluate_changed


class Command(BaseCommand):
    help = "Listen for book changes and keep one batch evaluation queued while coins wait."

    def handle(self, *args, **options):
        state = StateManager.from_url(settings.REDIS_URL)
        dispatcher = Dispatcher(state, lambda: evaluate_changed.apply_async(expires=10),
                                realtime=realtime.from_settings("dispatcher"))
        realtime.settle_heap()  # Django and Celery, loaded: out of every full collection's way
        signal.signal(signal.SIGTERM, lambda *_: dispatcher.stop())
        signal.signal(signal.SIGINT, lambda *_: dispatcher.stop())
        self.stdout.write("signals: dispatching evaluations on book changes")
        dispatcher.run()
