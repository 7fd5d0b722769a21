from django.apps import AppConfig

from liveguard import ports


class DashboardConfig(AppConfig):
    name = "dashboard"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from .relay import announce_control  # the relay reads trading's models: only once the registry is ready

        ports.connect(announce_control=announce_control)
