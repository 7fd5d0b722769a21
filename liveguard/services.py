"""Changing the controls: always audited, always mirrored to the hot state at once.

The database is the record of truth; Redis holds the mirror every evaluation reads. The rule for
every control: the safe direction goes first. Engaging (the kill switch, a pause) is written to
Redis first and then committed; releasing is committed first and then written to Redis. A Redis
error never stops an engage from being committed: the guard reads the database as well as the
mirror (either engaged blocks), and beat re-mirrors the database every second
(`mirror_guard_state`), so a mirror left behind is corrected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import redis
from django.db import transaction

from . import ports
from .clock import trading_day_keys
from .models import AuditLog, GuardLimits, KillSwitch, SymbolPause, save_audited

log = logging.getLogger(__name__)


def _mirror(write: Callable[[], object], what: str) -> bool:
    """Write to the Redis mirror; a failure is logged, never raised (the database decides)."""
    try:
        write()
        return True
    except redis.RedisError as exc:
        log.error("Redis mirror not updated (%s): %s; the guard reads the database, beat re-mirrors it", what, exc)
        return False


def set_kill_switch(state, engaged: bool, user=None, reason: str = "") -> KillSwitch:
    """Engage: Redis first, then the database. Release: the database first, then Redis."""
    if engaged:
        _mirror(lambda: state.set_kill_switch(True), "kill switch engaged")
    switch = KillSwitch.load()
    switch.engaged = engaged
    switch.reason = reason[:200]
    switch.changed_by = user if user is not None and user.is_authenticated else None
    save_audited(switch, user)
    # Mirror the committed value (again, for an engage: a re-mirror may have overwritten it meanwhile).
    _mirror(lambda: state.set_kill_switch(engaged), "kill switch " + ("engaged" if engaged else "released"))
    log.warning("kill switch %s by %s%s", "engaged" if engaged else "released", _user(user) or "the system", f": {reason}" if reason else "")
    return switch


def save_limits(state, limits: GuardLimits, user=None) -> GuardLimits:
    """Validate, save with an audit trail, and make every worker re-read the limits at once."""
    limits.full_clean()
    save_audited(limits, user)
    state.bump_limits_version()
    return limits


def update_limits(state=None, user=None, **changes) -> GuardLimits:
    limits = GuardLimits.load()
    for name, value in changes.items():
        if not hasattr(limits, name):
            raise ValueError(f"unknown limit {name!r}")
        setattr(limits, name, value)
    return save_limits(ports.state() if state is None else state, limits, user)


def pause_symbol(state, symbol: str, user=None, reason: str = "", until: datetime | None = None) -> SymbolPause:
    """Engage a pause: Redis first, then the database, then the whole set re-mirrored.

    `until`: a cool-down that ends by itself. It never shortens a pause already in force.
    """
    _mirror(lambda: state.add_paused(symbol), f"pause {symbol}")
    with transaction.atomic():
        pause, created = SymbolPause.objects.select_for_update().get_or_create(
            symbol=symbol, defaults={"reason": reason[:200], "paused_by": _user(user), "until": until})
        if created:
            AuditLog.objects.create(model="SymbolPause", field=symbol, old_value="trading",
                                    new_value=f"paused until {until.isoformat()}" if until else "paused", user=_user(user))
        elif pause.until is not None and (until is None or until > pause.until):
            pause.until, pause.reason = until, reason[:200] or pause.reason  # longer (or open-ended) wins
            pause.save(update_fields=["until", "reason"])
    _mirror(lambda: state.set_paused(SymbolPause.active().values_list("symbol", flat=True)), f"pause {symbol}")
    return pause


def resume_symbol(state, symbol: str, user=None) -> bool:
    """Release a pause: the database first, then Redis."""
    with transaction.atomic():
        deleted, _ = SymbolPause.objects.filter(symbol=symbol).delete()
        if deleted:
            AuditLog.objects.create(model="SymbolPause", field=symbol, old_value="paused", new_value="trading",
                                    user=_user(user))
    _mirror(lambda: state.set_paused(SymbolPause.active().values_list("symbol", flat=True)), f"resume {symbol}")
    return bool(deleted)


def mirror_guard_state(state=None, now: datetime | None = None) -> dict:
    """Write the database's guard state into Redis: the kill switch and the pauses always; the
    trade counters (this hour's and this KST day's pairs) and each coin's exposure when Redis lost
    them (flushed or restarted), only ever raising them. Run every second by beat, at the start of
    the worker and of beat, and by a reservation that finds Redis not yet mirrored."""
    if state is None:
        state = ports.state()
    now = now or datetime.now(UTC)
    hour, day = trading_day_keys(now)
    counts = ports.database_counts(now)
    trades_hour, trades_day, exposure = counts.trades_hour, counts.trades_day, counts.exposure_krw
    kill = bool(KillSwitch.objects.filter(pk=1).values_list("engaged", flat=True).first())
    SymbolPause.objects.filter(until__lte=now).delete()  # cool-downs that have run out
    paused = list(SymbolPause.active(now).values_list("symbol", flat=True))
    rebuilt, raised = state.mirror_guard(kill_switch=kill, paused=paused, hour=hour, day=day, trades_hour=trades_hour,
                                         trades_day=trades_day, exposure_krw=exposure)
    if rebuilt:
        log.warning("guard state rebuilt in Redis from the database: %s trades this hour, %s today, exposure %s",
                    trades_hour, trades_day, exposure)
    return {"kill_switch": kill, "paused": sorted(paused), "trades_hour": trades_hour, "trades_day": trades_day,
            "exposure_krw": exposure, "rebuilt": rebuilt, "raised": raised}


def _user(user):
    return user if user is not None and user.is_authenticated else None
