"""StateManager: the one entry point to the hot state, composed of a store per concern."""

from __future__ import annotations

from marketdata.store import MarketStore

from .accounts import AccountStore
from .coordination import CoordinationStore
from .evaluation import EvaluationStore
from .guard import GuardStore
from .orders import OrderStore
from .risk import RiskStore
from .signals import SignalStore


class StateManager(EvaluationStore, SignalStore, OrderStore, GuardStore, CoordinationStore, RiskStore, AccountStore,
                   MarketStore):
    """Typed reads and writes of the hot state; key strings are built only in keys (and marketdata.store)."""
