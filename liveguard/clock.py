"""The trading day's hour and day buckets, in TRADING_DAY_TZ (00:00 KST by default).

The trade counters are keyed by them in Redis and counted by them in the database: both sides
must cut the day at the same instant.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from django.conf import settings


def trading_day_keys(now: datetime | None = None) -> tuple[str, str]:
    """(hour, day) bucket names in the trading day's zone (00:00 KST by default)."""
    local = (now or datetime.now(UTC)).astimezone(ZoneInfo(settings.TRADING_DAY_TZ))
    return local.strftime("%Y%m%d%H"), local.strftime("%Y%m%d")


def start_of_trading_day(now: datetime | None = None) -> datetime:
    local = (now or datetime.now(UTC)).astimezone(ZoneInfo(settings.TRADING_DAY_TZ))
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def start_of_trading_hour(now: datetime | None = None) -> datetime:
    local = (now or datetime.now(UTC)).astimezone(ZoneInfo(settings.TRADING_DAY_TZ))
    return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
