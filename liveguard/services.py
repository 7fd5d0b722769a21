"""Changing the controls: always audited, always mirrored to the hot state at once."""

from __future__ import annotations

from .models import AuditLog, GuardLimits, KillSwitch, SymbolPause, save_audited


def set_kill_switch(state, engaged: bool, user=None, reason: str = "") -> KillSwitch:
    """Engage or release the kill switch: database first (the truth), then the Redis mirror."""
    switch = KillSwitch.load()
    switch.engaged = engaged
    switch.reason = reason[:200]
    switch.changed_by = user if user is not None and user.is_authenticated else None
    save_audited(switch, user)
    state.set_kill_switch(engaged)
    return switch


def save_limits(state, limits: GuardLimits, user=None) -> GuardLimits:
    """Validate, save with an audit trail, and make every worker re-read the limits at once."""
    limits.full_clean()
    save_audited(limits, user)
    state.bump_limits_version()
    return limits


def update_limits(state=None, user=None, **changes) -> GuardLimits:
    from trading.engine import get_state

    limits = GuardLimits.load()
    for name, value in changes.items():
        if not hasattr(limits, name):
            raise ValueError(f"unknown limit {name!r}")
        setattr(limits, name, value)
    return save_limits(state or get_state(), limits, user)


def pause_symbol(state, symbol: str, user=None, reason: str = "") -> SymbolPause:
    pause, created = SymbolPause.objects.get_or_create(symbol=symbol, defaults={"reason": reason[:200], "paused_by": _user(user)})
    if created:
        AuditLog.objects.create(model="SymbolPause", field=symbol, old_value="trading", new_value="paused", user=_user(user))
    state.set_paused(SymbolPause.objects.values_list("symbol", flat=True))
    return pause


def resume_symbol(state, symbol: str, user=None) -> bool:
    deleted, _ = SymbolPause.objects.filter(symbol=symbol).delete()
    if deleted:
        AuditLog.objects.create(model="SymbolPause", field=symbol, old_value="paused", new_value="trading", user=_user(user))
    state.set_paused(SymbolPause.objects.values_list("symbol", flat=True))
    return bool(deleted)


def _user(user):
    return user if user is not None and user.is_authenticated else None
