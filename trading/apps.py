from django.apps import AppConfig


class TradingConfig(AppConfig):
    name = "trading"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        import arbproject.celery  # noqa: F401 — the project's Celery app: shared tasks are sent through it

        from . import telemetry  # noqa: F401 — connects the Celery task-latency signals in every process
        from .wiring import connect_liveguard  # models are loaded only once the registry is ready

        connect_liveguard()
