from django.apps import AppConfig


class TradingConfig(AppConfig):
    name = "trading"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from .wiring import connect_liveguard  # models are loaded only once the registry is ready

        connect_liveguard()
