import sys

from django.apps import AppConfig

# Commands that only inspect or prepare (they send no order): they run even when live mode is
# misconfigured, so `manage.py check` can still say what is wrong.
DIAGNOSTIC_COMMANDS = {"check", "help", "version", "diffsettings", "migrate", "makemigrations", "showmigrations",
                       "sqlmigrate", "collectstatic", "compilemessages"}


class LiveguardConfig(AppConfig):
    name = "liveguard"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # registers the system checks

        # Fail closed at start-up: a process that can send orders (web server, Celery, management
        # commands) refuses to start in live mode without keys, the explicit confirmation and a
        # real secret key. Settings only: no database or Redis here.
        if not _diagnostic_command(sys.argv):
            checks.assert_live_mode_safe()


def _diagnostic_command(argv: list[str]) -> bool:
    if not argv or not argv[0].replace("\\", "/").endswith(("manage.py", "django-admin", "django/__main__.py")):
        return False
    command = next((a for a in argv[1:] if not a.startswith("-")), "help")
    return command in DIAGNOSTIC_COMMANDS
