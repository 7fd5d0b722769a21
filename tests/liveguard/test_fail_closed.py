"""Issue 8, point 5: fail closed.

The kill switch and the pauses take effect even when Redis fails or loses them; beat re-mirrors
the database into Redis (kill switch, pauses, trade counters, exposure); a reconciliation result
expires; live mode's safety conditions hold in every process; quote is reserved across coins.
"""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
import redis as redis_lib
from django.core.exceptions import ImproperlyConfigured

from liveguard import services
from liveguard.checks import LIVE_CONFIRM_PHRASE, assert_live_mode_safe
from liveguard.guard import Block, Guard, Reservation, kill_switch_engaged, trading_day_keys
from liveguard.models import GuardLimits, KillSwitch, SymbolPause
from tests.conftest import set_limits
from tests.support import free_port
from trading import engine, ledger, wiring
from trading.models import Pair, Position
from trading.state import StateManager

pytestmark = pytest.mark.django_db

# Upbit bids 3 % above Binance asks at 1,400 KRW/USDT: buy Binance, sell Upbit (as in test_engine).
JUMP = dict(upbit_bids=(("143000000", "0.02"), ("142900000", "1")), upbit_asks=(("143100000", "1"),),
            binance_bids=(("99000", "1"),), binance_asks=(("99010", "0.005"), ("99020", "1")))


@pytest.fixture(autouse=True)
def _fresh_caches():
    engine.forget_limits()
    yield
    engine.forget_limits()


limits = set_limits


def dead_state() -> StateManager:
    """A state whose Redis refuses every connection."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return StateManager(redis_lib.Redis(port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2,
                                        retry=Retry(NoBackoff(), 0)))


def pair(created_at: datetime | None = None, **fields) -> Pair:
    values = {"symbol": "BTC", "buy_exchange": "binance", "sell_exchange": "upbit", "state": "filled",
              "quantity": D("0.01"), **fields}
    obj = Pair.objects.create(**values)
    if created_at is not None:
        Pair.objects.filter(pk=obj.pk).update(created_at=created_at)
    return obj


# --- the kill switch and the pauses ------------------------------------------------------------


def test_kill_switch_engaged_while_redis_fails_still_blocks_the_next_evaluation(state, market, monkeypatch):
    market("BTC", **JUMP)
    state.set_kill_switch(False)  # the mirror says released

    def redis_down(engaged):
        raise redis_lib.ConnectionError("Redis went away")

    monkeypatch.setattr(state, "set_kill_switch", redis_down)
    services.set_kill_switch(state, True, reason="incident")  # the engage is not lost to the Redis error
    monkeypatch.undo()
    assert KillSwitch.load().engaged
    assert state.kill_switch() is False  # the mirror was left released...
    assert engine.evaluate_symbol("BTC", state=state) == "rejected:kill_switch"  # ...and still nothing trades
    assert not Pair.objects.exists()


def test_a_mirror_that_says_released_while_the_database_says_engaged_blocks(state, market):
    market("BTC", **JUMP)
    KillSwitch.objects.update_or_create(pk=1, defaults={"engaged": True})
    state.set_kill_switch(False)
    assert engine.evaluate_symbol("BTC", state=state) == "rejected:kill_switch"
    assert state.kill_switch() is True  # and the mirror is corrected from the database


def test_an_unreadable_mirror_blocks(state):
    dead = dead_state()
    assert kill_switch_engaged(dead) is True
    assert Guard(dead, GuardLimits.load()).check_kill_switch() is not None


def test_no_evaluation_trades_while_redis_is_down(market, state):
    market("BTC", **JUMP)
    with pytest.raises(redis_lib.RedisError):
        engine.evaluate_symbol("BTC", state=dead_state())
    assert not Pair.objects.exists()


def test_engaging_goes_to_redis_first_releasing_to_the_database_first(state, monkeypatch):
    seen = []
    real_kill, real_add, real_set = state.set_kill_switch, state.add_paused, state.set_paused

    def kill(engaged):
        seen.append(("kill", engaged, KillSwitch.load().engaged))
        real_kill(engaged)

    def add(symbol):
        seen.append(("add_paused", symbol, SymbolPause.objects.filter(symbol=symbol).exists()))
        real_add(symbol)

    def replace(symbols):
        symbols = list(symbols)
        seen.append(("set_paused", tuple(symbols), None))
        real_set(symbols)

    monkeypatch.setattr(state, "set_kill_switch", kill)
    monkeypatch.setattr(state, "add_paused", add)
    monkeypatch.setattr(state, "set_paused", replace)
    services.set_kill_switch(state, True)
    # Engaging: Redis while the database still says released, then the committed value again.
    assert seen == [("kill", True, False), ("kill", True, True)]
    seen.clear()
    services.set_kill_switch(state, False)
    assert seen == [("kill", False, False)]  # releasing: the database first
    seen.clear()
    services.pause_symbol(state, "XRP")
    assert seen == [("add_paused", "XRP", False), ("set_paused", ("XRP",), None)]
    seen.clear()
    services.resume_symbol(state, "XRP")
    assert seen == [("set_paused", (), None)]


def test_a_pause_survives_a_redis_flush(state, market, redis_client):
    market("BTC", **JUMP)
    services.pause_symbol(state, "BTC", reason="listing check")
    redis_client.flushdb()
    market("BTC", **JUMP)
    assert engine.evaluate_symbol("BTC", state=state) == "rejected:paused"  # the database still says paused
    assert not Pair.objects.exists()


# --- beat re-mirrors the database -----------------------------------------------------------


def test_beat_mirror_restores_kill_switch_pauses_counters_and_exposure_after_flushdb(state, redis_client):
    from trading import tasks

    services.set_kill_switch(state, True, reason="maintenance")
    services.pause_symbol(state, "ETH")
    pair()
    pair(state="pending")
    pair(state="failed", quantity=0)  # given back before sending: does not count
    Position.objects.create(symbol="BTC", side="long_binance", quantity=D("0.01"), entry_buy_price=D("138600000.5"),
                            entry_sell_price=D("143000000"))
    redis_client.flushdb()  # Redis restarted empty
    assert state.kill_switch() is None and state.paused_symbols() == set()

    tasks.mirror_guard_state()  # what beat runs every second

    assert state.kill_switch() is True
    assert state.paused_symbols() == {"ETH"}
    hour, day = trading_day_keys()
    assert state.trades_counted(hour, day) == (2, 2)
    assert state.exposure("BTC") == 1_386_001  # 0.01 x 138,600,000.5 KRW = 1,386,000.005, rounded up
    assert state.guard_mirrored()


def test_beat_is_scheduled_every_second():
    from arbproject.celery import app

    entry = next(e for e in app.conf.beat_schedule.values() if e["task"] == "trading.tasks.mirror_guard_state")
    assert entry["schedule"] == 1.0


def test_worker_and_beat_start_up_mirror_the_database(state, redis_client):
    from arbproject.celery import _beat_init, _worker_ready

    services.pause_symbol(state, "SOL")
    KillSwitch.objects.update_or_create(pk=1, defaults={"engaged": True})
    redis_client.flushdb()
    _worker_ready()
    assert state.kill_switch() is True and state.paused_symbols() == {"SOL"} and state.guard_mirrored()
    redis_client.flushdb()
    _beat_init()  # paper mode: safe to start, then the mirror
    assert state.kill_switch() is True and state.guard_mirrored()


def test_counters_are_rebuilt_from_the_pairs_of_the_current_hour_and_kst_day(state):
    now = datetime(2026, 3, 10, 5, 30, tzinfo=UTC)  # 14:30 KST: the hour began 05:00 UTC, the day 15:00 UTC on the 9th
    pair(now - timedelta(minutes=20))  # this hour
    pair(now - timedelta(minutes=10), state="pending")  # in flight: counts
    pair(now - timedelta(minutes=5), state="partial")
    pair(now - timedelta(minutes=4), state="failed", quantity=D("0.004"))  # sent, some filled: counts
    pair(now - timedelta(minutes=3), state="failed", quantity=0)  # refused before sending: does not count
    pair(now - timedelta(minutes=2), kind="close")  # closing pairs take no slot
    pair(now - timedelta(minutes=2), mode="live")  # the other mode's pairs
    pair(now - timedelta(minutes=31))  # 13:59 KST: today, not this hour
    pair(datetime(2026, 3, 9, 15, 0, tzinfo=UTC))  # 00:00 KST: today
    pair(datetime(2026, 3, 9, 14, 59, 59, tzinfo=UTC))  # 23:59:59 KST yesterday
    report = services.mirror_guard_state(state, now=now)
    assert (report["trades_hour"], report["trades_day"]) == (4, 6)
    assert state.trades_counted("2026031014", "20260310") == (4, 6)


def test_a_rebuild_never_lowers_a_counter_a_reservation_just_raised(state, redis_client):
    now = datetime(2026, 3, 10, 5, 30, tzinfo=UTC)
    pair(now - timedelta(minutes=1))
    redis_client.set("arbitrage:guard:trades:hour:2026031014", 7)  # reservations that landed after the flush
    services.mirror_guard_state(state, now=now)
    assert state.trades_counted("2026031014", "20260310") == (7, 1)


def test_a_redis_restarted_from_an_older_snapshot_is_rebuilt(state, redis_client):
    now = datetime(2026, 3, 10, 5, 30, tzinfo=UTC)
    for minutes in (1, 2, 3):
        pair(now - timedelta(minutes=minutes))
    services.mirror_guard_state(state, now=now)
    redis_client.set("arbitrage:guard:trades:hour:2026031014", 1)  # the snapshot predates two pairs
    redis_client.set("arbitrage:guard:trades:day:20260310", 1)
    redis_client.set("arbitrage:guard:mirrored", "run-id-of-the-previous-server")
    assert services.mirror_guard_state(state, now=now)["rebuilt"]
    assert state.trades_counted("2026031014", "20260310") == (3, 3)


def test_trade_limits_hold_across_a_redis_flush(state, market, redis_client):
    limits(max_trades_per_hour=2)
    pair()
    pair()
    redis_client.flushdb()  # the counters are gone; the database still has two pairs this hour
    market("BTC", **JUMP)
    assert engine.evaluate_symbol("BTC", state=state) == "rejected:trades_per_hour"
    assert Pair.objects.count() == 2


def test_a_reservation_waits_for_the_mirror(state):
    assert state.reserve_trade("BTC", "h", "d", 1, max_per_hour=10, max_per_day=10, max_exposure_krw=10,
                               require_mirrored=True) == "unmirrored"
    services.mirror_guard_state(state)
    assert state.reserve_trade("BTC", "h", "d", 1, max_per_hour=10, max_per_day=10, max_exposure_krw=10,
                               require_mirrored=True) == "ok"


# --- the reconciliation result expires ---------------------------------------------------------


def test_an_expired_reconciliation_blocks_live_trading_and_shows_stale(state, market, settings, client, monkeypatch,
                                                                       redis_client):
    from trading.state import accounts as state_module

    settings.LIVE_MODE = True
    state.set_reconciliation({"ok": True, "differences": [], "cancelled": [], "adopted": []})
    assert 0 < redis_client.ttl("arbitrage:reconciliation") <= 180  # stored with an expiry
    assert state.evaluation_context("BTC", "upbit").reconciled is True
    later = datetime.now(UTC) + timedelta(seconds=181)
    monkeypatch.setattr(state_module, "utcnow", lambda: later)  # three minutes without a new result
    assert state.evaluation_context("BTC", "upbit").reconciled is False
    market("BTC", **JUMP)
    ledger.deposit("binance", "USDT", D("100000"))  # live mode trades the ledger's (adopted) balances
    ledger.deposit("upbit", "BTC", D("1"))
    assert engine.evaluate_symbol("BTC", state=state) == "rejected:reconciliation"
    health = client.get("/health").json()
    assert health["reconciliation"]["ok"] is False and health["reconciliation"]["stale"] is True
    assert any(p.startswith("reconciliation stale") for p in health["problems"])


def test_the_reconciliation_max_age_is_a_setting(state, settings, redis_client):
    settings.RECONCILE_MAX_AGE_S = 30
    state.set_reconciliation({"ok": True})
    assert 0 < redis_client.ttl("arbitrage:reconciliation") <= 30
    redis_client.delete("arbitrage:reconciliation")  # what the expiry does
    assert state.reconciliation()["stale"] is True and state.reconciliation()["ok"] is False
    assert state.evaluation_context("BTC", "upbit").reconciled is False


# --- live mode's safety conditions at run time ----------------------------------------------


@pytest.fixture
def live_settings(settings):
    settings.LIVE_MODE = True
    settings.DEBUG = False
    settings.LIVE_MODE_CONFIRM = LIVE_CONFIRM_PHRASE
    settings.UPBIT_API_KEY = settings.UPBIT_SECRET_KEY = settings.BINANCE_API_KEY = settings.BINANCE_SECRET_KEY = "k"
    settings.SECRET_KEY = "a-real-secret"
    return settings


def test_live_mode_without_the_confirmation_builds_no_adapter(state, live_settings, monkeypatch):
    import trading.exchanges.binance as binance
    import trading.exchanges.upbit as upbit

    built = []

    class Recorder:
        def __init__(self, *args, **kwargs):
            built.append(args)

        def __getattr__(self, name):
            return lambda *a, **k: None

    monkeypatch.setattr(binance, "BinanceAdapter", Recorder)
    monkeypatch.setattr(upbit, "UpbitAdapter", Recorder)
    live_settings.LIVE_MODE_CONFIRM = ""
    with pytest.raises(ImproperlyConfigured, match="opt-in"):
        engine.default_executor(state, engine.fees())
    assert built == [] and wiring._live_executor is None


def test_every_process_refuses_unsafe_live_mode(live_settings, monkeypatch):
    from django.apps import apps

    from arbproject.celery import assert_safe_to_start
    from trading import tasks

    assert_live_mode_safe()  # keys, the confirmation and a real secret key: safe
    live_settings.SECRET_KEY = live_settings.INSECURE_SECRET_KEY
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SECRET_KEY"):
        assert_live_mode_safe()
    with pytest.raises(ImproperlyConfigured):
        tasks.reconcile_venues()  # before any adapter is built
    with pytest.raises(SystemExit):
        assert_safe_to_start("worker")  # Celery worker_init and beat_init
    liveguard = apps.get_app_config("liveguard")
    monkeypatch.setattr(sys, "argv", ["uvicorn", "arbproject.asgi:application"])
    with pytest.raises(ImproperlyConfigured):
        liveguard.ready()  # the web server (and every command) at start
    monkeypatch.setattr(sys, "argv", ["manage.py", "check"])
    liveguard.ready()  # `manage.py check` still runs, to say what is wrong


def test_paper_mode_needs_nothing(settings):
    settings.LIVE_MODE = False
    settings.LIVE_MODE_CONFIRM = ""
    assert_live_mode_safe()


# --- quote reserved atomically across coins --------------------------------------------------


def test_two_coins_cannot_both_spend_the_same_quote(state, redis_url):
    services.mirror_guard_state(state)
    limits_ = limits(max_position_size=D("1e12"))
    for _ in range(10):
        results = {}
        barrier = threading.Barrier(2)

        def worker(symbol, barrier=barrier, results=results):
            guard = Guard(StateManager(redis_lib.Redis.from_url(redis_url)), limits_)
            barrier.wait()
            results[symbol] = guard.reserve(symbol, D("840000"), quote_venue="binance", quote_needed=D("600"),
                                            quote_available=D("1000"))

        threads = [threading.Thread(target=worker, args=(s,)) for s in ("BTC", "ETH")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        passed = [r for r in results.values() if isinstance(r, Reservation)]
        refused = [r for r in results.values() if isinstance(r, Block)]
        assert len(passed) == 1 and [b.check for b in refused] == ["quote_balance"]
        assert state.quote_reserved("binance") == 60_000  # 600 USDT in hundredths
        Guard(state, limits_).release(passed[0])
        assert state.quote_reserved("binance") == 0


def test_settle_gives_the_quote_back_and_a_stale_balance_is_read_again(state):
    services.mirror_guard_state(state)
    guard = Guard(state, limits(max_position_size=D("1e12")))
    first = guard.reserve("BTC", D("1000"), quote_venue="upbit", quote_needed=D("700"), quote_available=D("1000"))
    assert isinstance(first, Reservation) and first.quote_units == 70_000
    blocked = guard.reserve("ETH", D("1000"), quote_venue="upbit", quote_needed=D("700"), quote_available=D("1000"))
    assert isinstance(blocked, Block) and blocked.check == "quote_balance"
    # A balance read before a settlement must not meet the reservation that settlement gave back.
    version = state.quote_version("upbit")
    guard.settle(first)
    assert state.quote_reserved("upbit") == 0 and state.quote_version("upbit") == version + 1
    assert state.reserve_trade("ETH", "h", "d", 1, max_per_hour=10, max_per_day=10, max_exposure_krw=10,
                               quote_venue="upbit", quote_units=70_000, quote_available_units=100_000,
                               quote_version=version) == "quote_changed"
    reads = []

    def ledger_balance():
        reads.append(1)
        if len(reads) == 1:  # another pair settles while this balance is read: the read is stale
            state.settle_quote("upbit", "another-pair")
            return D("1000")
        return D("300")  # read again: the spend is in the ledger

    again = guard.reserve("ETH", D("1000"), quote_venue="upbit", quote_needed=D("700"), quote_available=ledger_balance)
    assert isinstance(again, Block) and again.check == "quote_balance" and len(reads) == 2


def test_a_dead_workers_quote_reservation_expires(state):
    assert state.reserve_trade("BTC", "h", "d", 1, max_per_hour=10, max_per_day=10, max_exposure_krw=10,
                               quote_venue="binance", quote_units=900, quote_available_units=1000, hold_ms=1) == "ok"
    import time

    time.sleep(0.01)
    assert state.quote_reserved("binance") == 0
    assert state.reserve_trade("ETH", "h", "d", 1, max_per_hour=10, max_per_day=10, max_exposure_krw=10,
                               quote_venue="binance", quote_units=900, quote_available_units=1000) == "ok"


def test_an_evaluation_reserves_the_buy_venues_quote_and_settles_it(state, market):
    market("BTC", **JUMP)
    assert engine.evaluate_symbol("BTC", state=state) == "executed"
    assert state.quote_reserved("binance") == 0  # settled: the ledger shows the spend
    assert state.quote_version("binance") == 1
    # Another coin's pair in flight holds all of Binance's USDT: the next pair does not fit.
    held = int(ledger.balance("binance", "USDT") * 100)
    assert state.reserve_trade("ETH", "h", "d", 1, max_per_hour=10, max_per_day=10, max_exposure_krw=10,
                               quote_venue="binance", quote_units=held, quote_available_units=held) == "ok"
    market("BTC", **JUMP)
    state.set_exposure("BTC", 0)  # (the first pair's exposure is not what this is about)
    assert engine.evaluate_symbol("BTC", state=state) == "rejected:quote_balance"
    assert Pair.objects.count() == 1
