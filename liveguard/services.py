"""Changing the controls: always audited, always mirrored to the hot state at once."""

from __future__ import annotations

from .models import GuardLimits, KillSwitch, save_audited


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
