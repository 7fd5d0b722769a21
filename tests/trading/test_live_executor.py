"""The live executor against the venue over signed HTTP: both legs, and each way a pair can go wrong."""

from decimal import Decimal as D

import pytest
import requests
from django.db import transaction

from liveguard.models import GuardEvent, KillSwitch
from marketdata.venue.accounts import Accounts
from marketdata.venue.core import Venue
from marketdata.venue.market import MarketModel
from marketdata.venue.server import VenueServer, VenueThread
from tests.support import free_port
from trading.exchanges.binance import BinanceAdapter
from trading.exchanges.upbit import UpbitAdapter
from trading.execution import PairRequest
from trading.live import LiveExecutor
from trading.models import Fill, Order, Pair
from trading.signals import Fees

pytestmark = pytest.mark.django_db
SECRET = "s" * 64
FEES = Fees(upbit=D("0.0005"), binance=D("0.001"))


@pytest.fixture
def venue():
    accounts = Accounts()
    accounts.add("binance", "live-key", SECRET, {"USDT": "1000000", "BTC": "10"})
    accounts.add("upbit", "live-key", SECRET, {"KRW": "10000000000", "BTC": "10"})
    thread = VenueThread(VenueServer(Venue(MarketModel(seed=4)), accounts=accounts)).start()
    thread.call(thread.server.control, None, "pause")  # hold the books still while a pair runs
    yield thread
    thread.stop()


def adapters(venue, upbit_url=None):
    return {"binance": BinanceAdapter(venue.server.binance_url, "live-key", SECRET),
            "upbit": UpbitAdapter(upbit_url or venue.server.upbit_url, "live-key", SECRET, timeout=0.5)}


def tops(venue):
    bn = requests.get(f"{venue.server.binance_url}/api/v3/ticker/bookTicker", params={"symbol": "BTCUSDT"}, timeout=5).json()
    up = requests.get(f"{venue.server.upbit_url}/v1/orderbook", params={"markets": "KRW-BTC"}, timeout=5).json()[0]
    return D(bn["askPrice"]), D(str(up["orderbook_units"][0]["bid_price"]))


def run(state, venue, quantity, executor):
    ask, bid = tops(venue)
    pair = Pair.objects.create(symbol="BTC", buy_exchange="binance", sell_exchange="upbit")
    request = PairRequest("BTC", "binance", "upbit", quantity, ask, bid, D("1400"), D("0.00001"))
    with transaction.atomic():
        return executor.execute(pair, request)


def net_base(pair):
    """Coins bought minus coins sold across every order of the pair (hedges included), less any
    dust the note declares (below every venue's minimum order, so no order can carry it)."""
    total = D(0)
    for order in Order.objects.filter(pair=pair):
        total += order.filled_quantity if order.side == "buy" else -order.filled_quantity
    if "dust " in pair.note:
        dust = D(pair.note.split("dust ", 1)[1].split(" ", 1)[0])
        assert dust < D("0.0001")  # Binance's lot step x a few; Upbit's 5,000 KRW minimum
        total -= dust if total > 0 else -dust
    return total


def test_both_legs_fill_and_every_fill_is_in_the_ledger(state, venue):
    pair = run(state, venue, D("0.01"), LiveExecutor(state, FEES, adapters(venue)))
    assert pair.state == "filled" and pair.quantity == D("0.01") and pair.mode == "live"
    assert net_base(pair) == 0
    assert Fill.objects.filter(order__pair=pair).count() >= 2
    binance_fill = Fill.objects.filter(order__pair=pair, order__exchange="binance").first()
    assert binance_fill.fee_asset == "BTC" and binance_fill.fee == D("0.00001")  # as Binance reported it


def test_a_rejected_leg_is_unwound_to_flat(state, venue):
    venue.server.accounts.upbit["live-key"].balances["BTC"] = D(0)  # Upbit refuses the sell
    pair = run(state, venue, D("0.01"), LiveExecutor(state, FEES, adapters(venue)))
    assert pair.state == "failed" and "unwound 0.01 on binance" in pair.note
    assert Order.objects.get(pair=pair, exchange="upbit", side="sell").status == "rejected"
    assert net_base(pair) == 0
    assert not KillSwitch.load().engaged


def test_unequal_partial_fills_leave_no_exposure(state, venue):
    # Zero slippage allowance: each IOC takes only its top level, and the two tops differ in size.
    pair = run(state, venue, D("3"), LiveExecutor(state, FEES, adapters(venue), slippage=D(0)))
    assert pair.state == "partial" and "unwound" in pair.note
    assert Order.objects.filter(pair=pair, client_order_id__endswith="h").count() == 1
    assert net_base(pair) == 0


def test_a_leg_that_times_out_but_landed_is_found_and_the_pair_completes(state, venue):
    venue.call(venue.server.control, "upbit", "rest_delay", seconds=0.8)
    pair = run(state, venue, D("0.01"), LiveExecutor(state, FEES, adapters(venue)))
    venue.call(venue.server.control, "upbit", "rest_delay", seconds=0)
    assert pair.state == "filled" and net_base(pair) == 0
    assert len([o for o in venue.server.upbit.orders.orders.values() if o.client_id.startswith("kimp")]) == 1


def test_a_leg_whose_outcome_stays_unknown_is_flagged_and_trading_stops(state, venue):
    dead = f"http://127.0.0.1:{free_port()}"  # Upbit unreachable mid-pair
    pair = run(state, venue, D("0.01"), LiveExecutor(state, FEES, adapters(venue, upbit_url=dead), lookups=1))
    assert "UNHEDGED" in pair.note and pair.state == "failed"
    assert Order.objects.get(pair=pair, exchange="upbit").status == "unknown"
    assert GuardEvent.objects.filter(check_name="leg_risk").exists()
    assert KillSwitch.load().engaged and state.kill_switch() is True


def test_live_mode_end_to_end_feeds_engine_and_signed_orders(state, settings):
    """Venue -> feeds -> Redis -> engine in LIVE_MODE -> signed orders on the venue -> ledger in agreement."""
    from marketdata.feeds.binance import BinanceFeed
    from marketdata.feeds.upbit import UpbitFeed
    from tests.conftest import RunningFeed, feed_kwargs, wait_for
    from trading import engine
    from trading.reconcile import reconcile

    accounts = Accounts()
    accounts.add("binance", "e2e-key", SECRET, {"USDT": "100000", "ETH": "5"})
    accounts.add("upbit", "e2e-key", SECRET, {"KRW": "100000000", "ETH": "5"})
    thread = VenueThread(VenueServer(Venue(MarketModel(seed=9), step_hz=5), accounts=accounts)).start()
    try:
        settings.LIVE_MODE = True
        settings.UPBIT_API_KEY = settings.BINANCE_API_KEY = "e2e-key"
        settings.UPBIT_SECRET_KEY = settings.BINANCE_SECRET_KEY = SECRET
        settings.UPBIT_REST_URL, settings.BINANCE_REST_URL = thread.server.upbit_url, thread.server.binance_url
        engine.forget_limits()
        executor = engine.default_executor(state, engine.fees())
        assert reconcile(state, executor.adapters)["ok"]
        feeds = [UpbitFeed(state, ["ETH"], **feed_kwargs(thread, "upbit")), BinanceFeed(state, ["ETH"], **feed_kwargs(thread, "binance"))]
        with RunningFeed(feeds[0]), RunningFeed(feeds[1]):
            wait_for(lambda: state.get_book("upbit", "ETH") and state.get_book("binance", "ETH") and state.get_fx("upbit"))
            thread.call(thread.server.control, None, "premium", symbol="ETH", premium=0.03)
            outcome = wait_for(lambda: (r := engine.evaluate_symbol("ETH", state=state)) == "executed" and r, timeout=10)
        assert outcome == "executed"
        pair = Pair.objects.get(symbol="ETH")
        assert pair.mode == "live" and pair.state == "filled" and (pair.buy_exchange, pair.sell_exchange) == ("binance", "upbit")
        assert accounts.upbit["e2e-key"].balances["ETH"] == D("5") - pair.quantity  # the venue really sold
        assert reconcile(state, executor.adapters)["ok"]  # and the ledger agrees with both venues
        # The kill switch's flatten closes the position with a live reverse pair.
        from trading import exits
        from trading.models import Position

        assert exits.flatten_all(state) == ["ETH"]
        close = Pair.objects.get(symbol="ETH", kind="close")
        assert close.mode == "live" and close.quantity > 0
        assert not Position.objects.filter(symbol="ETH").exists() or Position.objects.get(symbol="ETH").quantity < pair.quantity
        assert reconcile(state, executor.adapters)["ok"]
    finally:
        engine.forget_limits()
        thread.stop()


def _old_pending_pair(state):
    from datetime import UTC, datetime, timedelta

    from trading.state import FxRecord

    state.set_fx(FxRecord("upbit", D("1400"), None, None, datetime.now(UTC)))
    pair = Pair.objects.create(symbol="BTC", buy_exchange="binance", sell_exchange="upbit", mode="live")
    Pair.objects.filter(pk=pair.pk).update(created_at=datetime.now(UTC) - timedelta(minutes=5))
    return Pair.objects.get(pk=pair.pk)


def test_a_worker_killed_after_the_first_leg_is_resumed_and_unwound(state, venue):
    from trading.live import leg_ids, resume_pending

    pair = _old_pending_pair(state)
    ads = adapters(venue)
    ask, _bid = tops(venue)
    # The dead worker had sent only the buy leg.
    ads["binance"].place_order("BTCUSDT", "BUY", D("0.01"), price=ask * D("1.003"), client_id=leg_ids(pair)[0])
    [settled] = resume_pending(state, LiveExecutor(state, FEES, ads, lookups=1), older_than_s=0)
    assert settled.state == "failed" and "unwound" in settled.note
    assert Order.objects.get(pair=pair, exchange="upbit").status == "rejected"  # never reached Upbit
    assert net_base(settled) == 0


def test_a_worker_killed_after_both_legs_is_resumed_and_completed(state, venue):
    from trading.live import leg_ids, resume_pending

    pair = _old_pending_pair(state)
    ads = adapters(venue)
    ask, bid = tops(venue)
    buy_id, sell_id = leg_ids(pair)
    ads["binance"].place_order("BTCUSDT", "BUY", D("0.01"), price=ask * D("1.003"), client_id=buy_id)
    ads["upbit"].place_order("KRW-BTC", "ask", "limit", volume=D("0.01"), price=bid * D("0.997"), time_in_force="ioc",
                             identifier=sell_id)
    [settled] = resume_pending(state, LiveExecutor(state, FEES, ads, lookups=1), older_than_s=0)
    assert settled.state == "filled" and settled.quantity == D("0.01") and net_base(settled) == 0
    from trading.models import Position

    assert Position.objects.get(symbol="BTC").quantity == D("0.01")
    assert resume_pending(state, LiveExecutor(state, FEES, ads, lookups=1), older_than_s=0) == []  # settled once
