from django.apps import AppConfig


class TradingConfig(AppConfig):
    name = "trading"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import telemetry  # noqa: F401 — connects the Celery task-latency signals in every process
