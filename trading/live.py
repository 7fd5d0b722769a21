"""Live order entry: the signed adapters wired into the one pair lifecycle (trading/execution.py).

Paper and live run the same settlement path; only the venues differ. What is left here is how
the live venues are built from the settings.
"""

from __future__ import annotations

from django.conf import settings

from liveguard.checks import assert_live_mode_safe

from .exchanges.binance import BinanceAdapter
from .exchanges.upbit import UpbitAdapter
from .execution import PairExecutor, leg_ids, resume_pending  # noqa: F401  (re-exported)
from .signals import Fees
from .transfers import TransferService


def live_venues() -> dict:
    """Both signed adapters from the settings; refused (ImproperlyConfigured) while live mode is unsafe."""
    assert_live_mode_safe()
    adapters = {
        "upbit": UpbitAdapter(settings.UPBIT_REST_URL, settings.UPBIT_API_KEY, settings.UPBIT_SECRET_KEY,
                              timeout=settings.EXCHANGE_TIMEOUT_S),
        "binance": BinanceAdapter(settings.BINANCE_REST_URL, settings.BINANCE_API_KEY, settings.BINANCE_SECRET_KEY,
                                  timeout=settings.EXCHANGE_TIMEOUT_S),
    }
    try:
        adapters["binance"].sync_clock()
    except Exception:  # noqa: BLE001 — measured again on the first -1021
        pass
    return adapters


def live_executor(state, fees: Fees) -> PairExecutor:
    return PairExecutor(state, fees, live_venues(), mode="live", slippage=settings.LEG_SLIPPAGE,
                        lease_s=settings.PAIR_LEASE_S, flag_after_s=settings.LEG_RISK_AFTER_S)


def transfer_service(state):
    """The rebalancer's service: withdrawal adapters built from the withdrawal keys only (none
    configured, no withdrawals), deposit addresses and deposits read with the trading keys."""
    readers = live_venues()
    venues = {}
    if settings.UPBIT_WITHDRAW_API_KEY and settings.UPBIT_WITHDRAW_SECRET_KEY:
        venues["upbit"] = UpbitAdapter(settings.UPBIT_REST_URL, settings.UPBIT_WITHDRAW_API_KEY,
                                       settings.UPBIT_WITHDRAW_SECRET_KEY, timeout=settings.EXCHANGE_TIMEOUT_S)
    if settings.BINANCE_WITHDRAW_API_KEY and settings.BINANCE_WITHDRAW_SECRET_KEY:
        venues["binance"] = BinanceAdapter(settings.BINANCE_REST_URL, settings.BINANCE_WITHDRAW_API_KEY,
                                           settings.BINANCE_WITHDRAW_SECRET_KEY, timeout=settings.EXCHANGE_TIMEOUT_S)
    if len(venues) < 2:
        venues = {}  # both directions or none: a one-way rebalancer would strand coins
    return TransferService(state, venues, readers)
