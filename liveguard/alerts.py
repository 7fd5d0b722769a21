"""The alert policy: observations in, incidents and their transitions out. Pure: no I/O.

Trading's state is observed (a beat task takes a snapshot every few seconds); nothing in the
trading path calls in here. Each incident has a stable key (`breaker`, `heartbeat:feed_binance`,
`leg_risk:pair:<id>`), so the caller, which keeps the set of open incidents, turns a condition
that lasts many snapshots into exactly one "opened" and, once it clears, one "resolved".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

KINDS = ("kill_switch", "breaker", "leg_risk", "heartbeat", "reconciliation", "daily_loss", "notify", "daily_summary")

# The daily-loss warning opens at 80 % of the limit and, so that a loss hovering at the line does
# not open and resolve on every snapshot, resolves only once the loss is back under 70 %.
DAILY_LOSS_WARN = Decimal("0.8")
DAILY_LOSS_CLEAR = Decimal("0.7")


@dataclass(frozen=True, slots=True)
class Observation:
    """One snapshot of what the alerts watch. None means "not known", never "fine"."""

    at: datetime
    kill_switch: bool
    kill_reason: str = ""
    breaker: str | None = None  # the trip's reason while tripped
    heartbeat_ages: Mapping[str, float | None] = field(default_factory=dict)  # seconds; None: expired
    heartbeat_stale_after: Mapping[str, float] = field(default_factory=dict)  # per component
    reconciliation_ok: bool | None = None  # None: not applicable (paper mode)
    reconciliation_detail: str = ""
    leg_risk: Mapping[str, str] = field(default_factory=dict)  # pair id -> what is exposed
    pnl_today: Decimal | None = None  # KRW; None: no metrics yet
    max_daily_loss: Decimal | None = None  # KRW
    undelivered: int = 0  # notifications failed lately or stuck pending (liveguard.notify.undelivered)


@dataclass(frozen=True, slots=True)
class Incident:
    key: str
    kind: str
    title: str
    body: str = ""


@dataclass(frozen=True, slots=True)
class Transition:
    """An incident that opened or resolved between the previous snapshot and this one."""

    action: str  # "opened" | "resolved"
    incident: Incident


def incidents(obs: Observation, open_keys: Iterable[str] = ()) -> dict[str, Incident]:
    """Every incident the observation shows, by key (`open_keys`: those open before, for hysteresis)."""
    found = [*_kill_switch(obs), *_breaker(obs), *_heartbeats(obs), *_reconciliation(obs), *_leg_risk(obs),
             *_daily_loss(obs, "daily_loss" in set(open_keys)), *_undelivered(obs)]
    return {incident.key: incident for incident in found}


def transitions(open_now: Mapping[str, Incident], observed: Mapping[str, Incident]) -> list[Transition]:
    """What opened (observed, not open before) and what resolved (open before, no longer observed)."""
    opened = [Transition("opened", observed[key]) for key in sorted(observed.keys() - open_now.keys())]
    resolved = [Transition("resolved", _resolution(open_now[key])) for key in sorted(open_now.keys() - observed.keys())]
    return opened + resolved


def _resolution(incident: Incident) -> Incident:
    titles = {"kill_switch": "Kill switch released", "breaker": "Circuit breaker reset"}
    return Incident(incident.key, incident.kind, titles.get(incident.kind, f"Resolved: {incident.title}"))


def _kill_switch(obs: Observation) -> list[Incident]:
    if not obs.kill_switch:
        return []
    return [Incident("kill_switch", "kill_switch", "Kill switch engaged", obs.kill_reason or "no reason given")]


def _breaker(obs: Observation) -> list[Incident]:
    if obs.breaker is None:
        return []
    return [Incident("breaker", "breaker", "Circuit breaker tripped", obs.breaker)]


def _heartbeats(obs: Observation) -> list[Incident]:
    found = []
    for component, age in sorted(obs.heartbeat_ages.items()):
        limit = obs.heartbeat_stale_after.get(component)
        if limit is None or (age is not None and age <= limit):
            continue
        seen = "no heartbeat (expired)" if age is None else f"last heartbeat {age:.0f} s ago"
        found.append(Incident(f"heartbeat:{component}", "heartbeat", f"Heartbeat lost: {component}", seen))
    return found


def _reconciliation(obs: Observation) -> list[Incident]:
    if obs.reconciliation_ok is not False:
        return []
    return [Incident("reconciliation", "reconciliation", "Reconciliation failing", obs.reconciliation_detail)]


def _leg_risk(obs: Observation) -> list[Incident]:
    return [Incident(f"leg_risk:pair:{pair_id}", "leg_risk", f"Leg risk: pair {pair_id} unhedged", detail)
            for pair_id, detail in sorted(obs.leg_risk.items())]


def _daily_loss(obs: Observation, was_open: bool) -> list[Incident]:
    if obs.pnl_today is None or not obs.max_daily_loss or obs.max_daily_loss <= 0:
        return []
    used = -obs.pnl_today / obs.max_daily_loss
    if used < (DAILY_LOSS_CLEAR if was_open else DAILY_LOSS_WARN):
        return []
    return [Incident("daily_loss", "daily_loss", "Daily loss at 80 % of its limit",
                     f"P&L today {obs.pnl_today:,.0f} KRW of a {obs.max_daily_loss:,.0f} KRW limit ({used:.0%})")]


def _undelivered(obs: Observation) -> list[Incident]:
    """A failure to notify is itself an incident: the other channels carry it, the admin shows it."""
    if obs.undelivered <= 0:
        return []
    return [Incident("notifications", "notify", "Notifications failing",
                     f"{obs.undelivered} notification(s) failed or stuck: see Notifications in the admin")]


def describe(obs: Observation) -> str:
    """A short status text (the Telegram /status reply)."""
    lines = [f"Kill switch: {'ENGAGED (' + (obs.kill_reason or 'no reason') + ')' if obs.kill_switch else 'released'}",
             f"Circuit breaker: {'tripped: ' + obs.breaker if obs.breaker else 'ok'}"]
    if obs.pnl_today is not None:
        limit = f" (daily loss limit {obs.max_daily_loss:,.0f})" if obs.max_daily_loss is not None else ""
        lines.append(f"P&L today: {obs.pnl_today:,.0f} KRW{limit}")
    if obs.reconciliation_ok is not None:
        lines.append(f"Reconciliation: {'ok' if obs.reconciliation_ok else 'FAILING ' + obs.reconciliation_detail}")
    lines.append(f"Unhedged pairs: {len(obs.leg_risk)}")
    open_titles = [i.title for i in incidents(obs).values() if i.kind == "heartbeat"]
    lines.append("Heartbeats: " + (", ".join(open_titles) if open_titles else "ok"))
    return "\n".join(lines)
