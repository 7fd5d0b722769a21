"""Configuration rules that make trading unsafe, as Django system checks (`manage.py check`).

The live-mode rules are also enforced at run time by every process that can send an order
(`assert_live_mode_safe`): the Celery worker and beat at start, the web server and management
commands at start (LiveguardConfig.ready), and every build of the live executor.
"""

from django.conf import settings
from django.core.checks import ERROR, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

LIVE_CONFIRM_PHRASE = "I understand this sends real orders"


@register("kimp")
def live_mode_checks(app_configs=None, **kwargs):
    """Refuse live mode without keys, an explicit opt-in and a real secret key."""
    problems = []
    if not settings.LIVE_MODE:
        return problems
    for name in ("UPBIT_API_KEY", "UPBIT_SECRET_KEY", "BINANCE_API_KEY", "BINANCE_SECRET_KEY"):
        if not getattr(settings, name):
            problems.append(Error(f"LIVE_MODE=true needs {name}.", id="kimp.E001"))
    if settings.LIVE_MODE_CONFIRM != LIVE_CONFIRM_PHRASE:
        problems.append(Error(
            "LIVE_MODE=true needs an explicit opt-in.",
            hint=f'Set LIVE_MODE_CONFIRM="{LIVE_CONFIRM_PHRASE}".',
            id="kimp.E002",
        ))
    if settings.SECRET_KEY == settings.INSECURE_SECRET_KEY:
        problems.append(Error("LIVE_MODE=true needs DJANGO_SECRET_KEY set to a real secret.", id="kimp.E003"))
    if settings.DEBUG:
        problems.append(Warning("DJANGO_DEBUG=true in live mode exposes internals in error pages.", id="kimp.W001"))
    return problems


@register("kimp")
def read_protection_checks(app_configs=None, **kwargs):
    """Live mode keeps its reads private: limits, the breaker's loss and the balances are not for anyone."""
    if settings.LIVE_MODE and not settings.API_READ_TOKEN:
        return [Error("LIVE_MODE=true needs API_READ_TOKEN set (reads must not be public in live mode).",
                      id="kimp.E004")]
    return []


def live_mode_problems() -> list[str]:
    """Why live mode is unsafe right now (no keys, no explicit opt-in, the insecure secret key); [] when safe."""
    return [p.msg for p in live_mode_checks() if p.level >= ERROR]


def assert_live_mode_safe() -> None:
    """Raise ImproperlyConfigured with every reason when LIVE_MODE is on but unsafe; no-op in paper mode."""
    if not settings.LIVE_MODE:
        return
    problems = live_mode_problems()
    if problems:
        raise ImproperlyConfigured("live mode refused: " + " ".join(problems))


@register("kimp")
def withdrawal_key_checks(app_configs=None, **kwargs):
    """Withdrawal keys are separate from the trading keys, and come in pairs."""
    problems = []
    for venue in ("UPBIT", "BINANCE"):
        key, secret = getattr(settings, f"{venue}_WITHDRAW_API_KEY"), getattr(settings, f"{venue}_WITHDRAW_SECRET_KEY")
        if bool(key) != bool(secret):
            problems.append(Error(f"{venue}_WITHDRAW_API_KEY and {venue}_WITHDRAW_SECRET_KEY go together.", id="kimp.E020"))
        if key and key == getattr(settings, f"{venue}_API_KEY"):
            problems.append(Error(f"{venue}_WITHDRAW_API_KEY must not be the trading key: withdrawals need keys of "
                                  "their own.", id="kimp.E021"))
    return problems


@register("kimp")
def market_data_checks(app_configs=None, **kwargs):
    problems = []
    if settings.FX_SOURCE not in {"upbit", "fixed"}:
        problems.append(Error(f"FX_SOURCE={settings.FX_SOURCE!r}: use 'upbit' or 'fixed'.", id="kimp.E010"))
    if settings.FEED_UPBIT_FORMAT not in {"DEFAULT", "SIMPLE", "JSON_LIST", "SIMPLE_LIST"}:
        problems.append(Error(f"FEED_UPBIT_FORMAT={settings.FEED_UPBIT_FORMAT!r} is not an Upbit format.", id="kimp.E011"))
    if settings.FEED_BINANCE_TIME_UNIT not in {"", "MILLISECOND", "MICROSECOND"}:
        problems.append(Error("FEED_BINANCE_TIME_UNIT must be MILLISECOND or MICROSECOND.", id="kimp.E012"))
    return problems
