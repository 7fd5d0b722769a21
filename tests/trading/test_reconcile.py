"""Reconciliation against the venue over signed HTTP."""

from decimal import Decimal as D

import pytest

from tests.conftest import start_venue
from trading import engine, ledger
from trading.exchanges.binance import BinanceAdapter
from trading.exchanges.upbit import UpbitAdapter
from trading.models import Order
from trading.reconcile import reconcile

pytestmark = pytest.mark.django_db
SECRET = "r" * 64


@pytest.fixture
def venue():
    thread = start_venue(6,
                         ("binance", "rec-key", SECRET, {"USDT": "5000", "BTC": "0.5"}),
                         ("upbit", "rec-key", SECRET, {"KRW": "20000000", "BTC": "0.2"}))
    yield thread
    thread.stop()


@pytest.fixture
def adapters(venue):
    return {"binance": BinanceAdapter(venue.server.binance_url, "rec-key", SECRET),
            "upbit": UpbitAdapter(venue.server.upbit_url, "rec-key", SECRET)}


def test_first_run_adopts_the_venues_balances(state, adapters):
    report = reconcile(state, adapters)
    assert report["ok"] and report["differences"] == []
    assert ledger.balances()[("binance", "USDT")] == D("5000") and ledger.balances()[("upbit", "BTC")] == D("0.2")
    assert state.reconciliation()["ok"] is True


def test_orphans_are_cancelled_and_our_own_orders_adopted(state, adapters, venue):
    reconcile(state, adapters)
    far = D(adapters["binance"].filters("BTCUSDT").tick_size) * 10**7  # 100,000 USDT: far above the book
    adapters["binance"].place_order("BTCUSDT", "SELL", D("0.01"), price=far, time_in_force="GTC", client_id="stranger")
    adapters["binance"].place_order("BTCUSDT", "SELL", D("0.01"), price=far, time_in_force="GTC", client_id="ours-1")
    Order.objects.create(client_order_id="ours-1", exchange="binance", symbol="BTC", side="sell", quantity=D("0.01"), price=far)
    report = reconcile(state, adapters)
    assert report["cancelled"] == ["binance:stranger"] and report["adopted"] == ["binance:ours-1"]
    open_ids = [o.client_id for o in adapters["binance"].open_orders()]
    assert open_ids == ["ours-1"]


def test_disagreement_refuses_live_trading_and_shows_in_health(state, adapters, venue, settings, client, market):
    reconcile(state, adapters)
    venue.server.accounts.upbit["rec-key"].balances["KRW"] += D("1000")  # money moved outside the system
    report = reconcile(state, adapters)
    assert not report["ok"] and report["differences"] == ["upbit KRW: exchange 20001000 vs ledger 20000000.00000000"]
    settings.LIVE_MODE = True
    health = client.get("/health").json()
    assert health["reconciliation"]["ok"] is False
    assert "ledger and venues disagree (reconciliation)" in health["problems"]
    market("BTC", upbit_bids=(("143000000", "1"),), upbit_asks=(("143100000", "1"),),
           binance_bids=(("99000", "1"),), binance_asks=(("99010", "1"),))
    ledger.deposit("binance", "USDT", D("100000"))
    assert engine.evaluate_symbol("BTC", state=state) == "rejected:reconciliation"
