import threading
import time
from decimal import Decimal as D

import pytest
from django.contrib.auth.models import User

from liveguard.models import AuditLog, GuardLimits, KillSwitch
from liveguard.services import set_kill_switch, update_limits
from tests.conftest import wait_for
from trading import engine, exits, metrics
from trading.dispatcher import Dispatcher
from trading.models import Pair, Position

pytestmark = pytest.mark.django_db

# Buy Binance at ~99,010 x 1,400, sell Upbit at 143,000,000: a 3 % premium.
JUMP = dict(upbit_bids=(("143000000", "1"),), upbit_asks=(("143100000", "1"),),
            binance_bids=(("99000", "1"),), binance_asks=(("99010", "1"),))


def open_position(state, market):
    market("BTC", **JUMP)
    assert engine.evaluate_symbol("BTC", state=state) == "executed"
    return Position.objects.get(symbol="BTC")


def test_take_profit_closes_when_the_premium_converges(state, market):
    position = open_position(state, market)
    # The premium collapses to ~0: closing (buy Upbit, sell Binance) now locks in the entry spread.
    market("BTC", upbit_bids=(("138500000", "1"),), upbit_asks=(("138600000", "1"),),
           binance_bids=(("99000", "1"),), binance_asks=(("99010", "1"),))
    assert exits.check_positions(state) == ["BTC"]
    close = Pair.objects.get(kind="close")
    assert (close.buy_exchange, close.sell_exchange) == ("upbit", "binance")
    assert close.quantity == position.quantity and "take-profit" in close.note
    assert not Position.objects.exists() and state.get_position("BTC") is None
    total = sum(p.net_pnl for p in Pair.objects.all())
    assert total > 0


def test_stop_loss_closes_when_the_premium_widens(state, market):
    open_position(state, market)
    market("BTC", upbit_bids=(("150000000", "1"),), upbit_asks=(("150100000", "1"),),
           binance_bids=(("99000", "1"),), binance_asks=(("99010", "1"),))
    assert exits.check_positions(state) == ["BTC"]
    assert "stop-loss" in Pair.objects.get(kind="close").note
    assert sum(p.net_pnl for p in Pair.objects.all()) < 0


def test_a_position_between_the_thresholds_stays_open_and_is_marked(state, market):
    open_position(state, market)
    market("BTC", **JUMP)
    assert exits.check_positions(state) == []
    mark = state.get_position("BTC")
    assert mark.pnl < 0  # closing right away would pay the spread back plus fees
    assert mark.side == "long_binance"


def test_flatten_closes_every_position_even_with_the_kill_switch_engaged(state, market):
    open_position(state, market)
    set_kill_switch(state, True)
    assert exits.flatten_all(state) == ["BTC"]
    assert not Position.objects.exists()
    assert engine.evaluate_symbol("BTC", state=state) == "rejected:kill_switch"


def test_metrics_value_every_balance_in_krw(state, market):
    open_position(state, market)
    record = metrics.compute(state, D("1400"))
    assert record.positions_count == 1 and record.trades_today == 1 and record.orders_count == 2
    # 100,000,000 KRW + 70,000 USDT x 1,400 + two coin inventories of ~10,000,000 KRW each.
    assert D("215000000") < record.total_balance < D("220000000")
    assert record.available_balance < record.total_balance
    state.set_metrics(record)
    assert state.get_metrics() == record


def test_kill_switch_and_limit_changes_are_audited_and_mirrored(state):
    user = User.objects.create_user("ops", is_staff=True)
    set_kill_switch(state, True, user, "maintenance")
    assert KillSwitch.load().engaged and state.kill_switch() is True
    entry = AuditLog.objects.get(model="KillSwitch", field="engaged")
    assert (entry.old_value, entry.new_value, entry.user) == ("False", "True", user)
    version = state.limits_version()
    update_limits(state, user, max_daily_loss=D("1000"))
    assert GuardLimits.load().max_daily_loss == D("1000")
    assert AuditLog.objects.filter(model="GuardLimits", field="max_daily_loss", new_value="1000").exists()
    assert state.limits_version() == version + 1


def test_kill_switch_survives_a_lost_redis_mirror(state):
    set_kill_switch(state, True)
    state.redis.delete("arbitrage:guard:kill")  # e.g. Redis restarted empty
    from liveguard.guard import kill_switch_engaged

    assert kill_switch_engaged(state) is True
    assert state.kill_switch() is True  # mirrored again from the database


def changed(state, coins, at=None):
    """Mark coins changed as a feed's flush does (the flush's script)."""
    state.write_market((), changed=coins, changed_at=time.time() if at is None else at)


def taken(state):
    """What the batch task does when it starts: every changed coin, the flag cleared."""
    return state.take_changed("upbit")[0]


def test_a_burst_of_flushes_announces_one_queued_batch_and_the_dispatcher_queues_it(state, redis_client):
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("arbitrage:evaluate")
    pubsub.get_message(timeout=1)
    for _ in range(50):
        changed(state, ["BTC", "ETH"])
    announced = [m for m in iter(lambda: pubsub.get_message(timeout=0.2), None)]
    assert len(announced) == 1
    assert [symbol for symbol, _ in taken(state)] == ["BTC", "ETH"]
    changed(state, ["BTC"])  # lands after the batch took the set: one more announcement
    assert pubsub.get_message(timeout=1) is not None
    assert [symbol for symbol, _ in taken(state)] == ["BTC"]
    assert taken(state) == []
    pubsub.close()
    enqueued = []
    dispatcher = Dispatcher(state, lambda: enqueued.append("batch"))
    changed(state, ["XRP"])  # announced while no dispatcher listened: the next one queues it when it starts
    thread = threading.Thread(target=dispatcher.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: enqueued == ["batch"], timeout=5)
        assert [symbol for symbol, _ in taken(state)] == ["XRP"]
        changed(state, ["ETH"])
        wait_for(lambda: enqueued == ["batch", "batch"], timeout=5)
    finally:
        dispatcher.stop()
        thread.join(5)


def test_a_change_keeps_the_time_of_its_oldest_unevaluated_tick(state):
    changed(state, ["BTC"], 100.0)
    changed(state, ["BTC", "ETH"], 105.0)
    assert taken(state) == [("BTC", 100.0), ("ETH", 105.0)]


def test_a_lost_batch_task_is_replaced_once_its_flag_lapses(state, redis_client, monkeypatch):
    import marketdata.store

    monkeypatch.setattr(marketdata.store, "EVALUATING_MS", 50)
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("arbitrage:evaluate")
    pubsub.get_message(timeout=1)
    changed(state, ["BTC"])
    changed(state, ["ETH"])  # one batch is queued: it will take ETH too
    assert pubsub.get_message(timeout=1) is not None and pubsub.get_message(timeout=0.02) is None
    time.sleep(0.08)
    changed(state, ["XRP"])  # the first never ran: announce another
    assert pubsub.get_message(timeout=1) is not None
    assert [s for s, _ in taken(state)] == ["BTC", "ETH", "XRP"]
    pubsub.close()


def test_rebalance_is_suggested_when_one_venue_runs_low(state):
    from trading import ledger

    ledger.deposit("upbit", "KRW", D("100000000"))
    ledger.deposit("binance", "USDT", D("70000"))
    ledger.deposit("upbit", "SOL", D("1"))
    ledger.deposit("binance", "SOL", D("9"))
    suggestions = metrics.rebalance_suggestions(state, D("1400"))
    assert [(s["asset"], s["low_venue"], s["suggested_transfer"]) for s in suggestions] == [("SOL", "upbit", "4.00000000")]
    assert state.rebalance() == suggestions


def test_exposure_left_in_redis_by_a_lost_database_is_reconciled(state, market):
    state.set_exposure("BTC", 999_999)  # from a previous life of the database
    market("BTC", **JUMP)
    assert engine.evaluate_symbol("BTC", state=state) == "none"  # sized to what the stale counter leaves: nothing
    assert exits.reconcile_exposure(state) == {"BTC": 0}
    assert engine.evaluate_symbol("BTC", state=state) == "executed"
    position = Position.objects.get()
    state.set_exposure("BTC", 0)  # and the other way round: Redis lost the key
    assert exits.reconcile_exposure(state)["BTC"] >= int(position.entry_buy_price * position.quantity)
