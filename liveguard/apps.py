from django.apps import AppConfig


class LiveguardConfig(AppConfig):
    name = "liveguard"
    default_auto_field = "django.db.models.BigAutoField"
