"""The pair lifecycle against the venue over signed HTTP: both legs, and each way a pair can go wrong."""

from decimal import Decimal as D

import pytest
import requests

from liveguard.models import GuardEvent, KillSwitch, SymbolPause
from tests.conftest import start_venue
from tests.support import free_port
from trading.exchanges.binance import BinanceAdapter
from trading.exchanges.types import LegOrder
from trading.exchanges.upbit import UpbitAdapter
from trading.execution import PairExecutor, PairRequest, leg_ids, resume_pending
from trading.models import Fill, Order, Pair, Position
from trading.signals import Fees

pytestmark = pytest.mark.django_db
SECRET = "s" * 64
FEES = Fees(upbit=D("0.0005"), binance=D("0.001"))


@pytest.fixture
def venue():
    thread = start_venue(4,
                         ("binance", "live-key", SECRET, {"USDT": "1000000", "BTC": "10"}),
                         ("upbit", "live-key", SECRET, {"KRW": "10000000000", "BTC": "10"}),
                         paused=True)
    yield thread
    thread.stop()


def adapters(venue, upbit_url=None):
    return {"binance": BinanceAdapter(venue.server.binance_url, "live-key", SECRET, lookup_budget_s=2),
            "upbit": UpbitAdapter(upbit_url or venue.server.upbit_url, "live-key", SECRET, timeout=0.5, lookup_budget_s=2)}


def executor(state, ads, **kwargs):
    return PairExecutor(state, FEES, ads, mode="live", **kwargs)


def tops(venue):
    bn = requests.get(f"{venue.server.binance_url}/api/v3/ticker/bookTicker", params={"symbol": "BTCUSDT"}, timeout=5).json()
    up = requests.get(f"{venue.server.upbit_url}/v1/orderbook", params={"markets": "KRW-BTC"}, timeout=5).json()[0]
    return D(bn["askPrice"]), D(str(up["orderbook_units"][0]["bid_price"]))


def run(state, venue, quantity, ex):
    ask, bid = tops(venue)
    pair = Pair.objects.create(symbol="BTC", buy_exchange="binance", sell_exchange="upbit", mode="live")
    return ex.execute(pair, PairRequest("BTC", "binance", "upbit", quantity, ask, bid, D("1400"), D("0.00001")))


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
    pair = run(state, venue, D("0.01"), executor(state, adapters(venue)))
    assert (pair.state, pair.stage, pair.quantity, pair.mode) == ("filled", "closed", D("0.01"), "live")
    assert net_base(pair) == 0
    assert Fill.objects.filter(order__pair=pair).count() >= 2
    binance_fill = Fill.objects.filter(order__pair=pair, order__exchange="binance").first()
    assert binance_fill.fee_asset == "BTC" and binance_fill.fee == D("0.00001")  # as Binance reported it
    assert set(Order.objects.filter(pair=pair).values_list("role", flat=True)) == {"leg"}


def test_a_rejected_leg_is_unwound_to_flat_with_an_exact_hedge(state, venue):
    venue.server.accounts.upbit["live-key"].balances["BTC"] = D(0)  # Upbit refuses the sell
    pair = run(state, venue, D("0.01"), executor(state, adapters(venue)))
    assert (pair.state, pair.stage) == ("failed", "closed") and "unwound 0.01 on binance" in pair.note
    assert Order.objects.get(pair=pair, exchange="upbit", side="sell").status == "rejected"
    hedge = Order.objects.get(pair=pair, role="hedge")
    assert (hedge.exchange, hedge.side, hedge.quantity, hedge.filled_quantity) == ("binance", "sell", D("0.01"), D("0.01"))
    assert net_base(pair) == 0
    assert not KillSwitch.load().engaged


def test_an_upbit_sell_over_fill_is_bought_back_with_a_limit_for_exactly_the_excess(state, venue):
    venue.server.accounts.binance["live-key"].balances["USDT"] = D(0)  # Binance refuses the buy
    pair = run(state, venue, D("0.01"), executor(state, adapters(venue)))
    hedge = Order.objects.get(pair=pair, role="hedge")
    assert (hedge.exchange, hedge.side, hedge.quantity, hedge.filled_quantity) == ("upbit", "buy", D("0.01"), D("0.01"))
    assert hedge.price > 0  # a limit, bounded
    assert net_base(pair) == 0 and not KillSwitch.load().engaged and pair.stage == "closed"
    # The buy-back's price difference is booked as hedge PnL: the pair's gross is exactly it.
    sell = Order.objects.get(pair=pair, role="leg", side="sell")
    assert pair.gross_pnl == (-(hedge.average_price - sell.average_price) * D("0.01")).quantize(D("1e-8"))


def test_unequal_partial_fills_leave_no_exposure(state, venue):
    # Zero slippage allowance: each IOC takes only its top level, and the two tops differ in size.
    pair = run(state, venue, D("3"), executor(state, adapters(venue), slippage=D(0)))
    assert pair.state == "partial" and pair.stage == "closed" and "unwound" in pair.note
    assert Order.objects.filter(pair=pair, role="hedge").count() >= 1
    assert net_base(pair) == 0


def test_a_leg_that_times_out_but_landed_is_found_and_the_pair_completes(state, venue):
    venue.call(venue.server.control, "upbit", "rest_delay", seconds=0.8)
    pair = run(state, venue, D("0.01"), executor(state, adapters(venue)))
    venue.call(venue.server.control, "upbit", "rest_delay", seconds=0)
    assert pair.state == "filled" and net_base(pair) == 0
    assert len([o for o in venue.server.upbit.orders.orders.values() if o.client_id.startswith("kimp")]) == 1


def test_a_binance_leg_recovered_by_look_up_is_booked_with_its_real_fills(state, venue):
    """Regression: a query answer has no fills; the look-up collects them from myTrades."""
    venue.call(venue.server.control, "binance", "fault", method="POST", path="/api/v3/order", kind="delay_after",
               seconds=6)
    ads = adapters(venue)
    ads["binance"].timeout = 0.5
    pair = run(state, venue, D("0.01"), executor(state, ads))
    buy = Order.objects.get(pair=pair, side="buy", role="leg")
    assert buy.filled_quantity == D("0.01") and buy.fills.count() >= 1 and buy.fee == D("0.00001")
    assert pair.state == "filled" and net_base(pair) == 0 and not Order.objects.filter(pair=pair, role="hedge").exists()


def test_a_leg_whose_outcome_stays_unknown_stops_the_coin_then_everything_and_resume_settles_it(state, venue):
    dead = f"http://127.0.0.1:{free_port()}"  # Upbit unreachable mid-pair
    ads = adapters(venue, upbit_url=dead)
    ex = executor(state, ads, flag_after_s=0)
    pair = run(state, venue, D("0.01"), ex)
    assert (pair.state, pair.stage) == ("pending", "flagged") and "UNRESOLVED" in pair.note
    assert Order.objects.get(pair=pair, exchange="upbit").status == "unknown"
    assert not Order.objects.filter(pair=pair, role="hedge").exists()  # never hedged blindly
    assert GuardEvent.objects.filter(check_name="leg_risk").exists()
    assert KillSwitch.load().engaged and state.kill_switch() is True
    assert SymbolPause.objects.filter(symbol="BTC").exists()
    # Upbit answers again: the order is proven absent, the Binance leg unwound, the pair closed.
    healthy = adapters(venue)
    healthy["upbit"].absent_after_s = 0
    [settled] = resume_pending(state, executor(state, healthy))
    assert (settled.state, settled.stage) == ("failed", "closed") and net_base(settled) == 0
    assert Order.objects.get(pair=pair, exchange="upbit", role="leg").status == "absent"
    assert not SymbolPause.objects.filter(symbol="BTC").exists()
    assert KillSwitch.load().engaged  # released by a person, who reads the guard event


def test_live_mode_end_to_end_feeds_engine_and_signed_orders(state, settings):
    """Venue -> feeds -> Redis -> engine in LIVE_MODE -> signed orders on the venue -> ledger in agreement."""
    from marketdata.feeds.binance import BinanceFeed
    from marketdata.feeds.upbit import UpbitFeed
    from tests.conftest import RunningFeed, feed_kwargs, wait_for
    from trading import engine
    from trading.reconcile import reconcile

    thread = start_venue(9,
                         ("binance", "e2e-key", SECRET, {"USDT": "100000", "ETH": "5"}),
                         ("upbit", "e2e-key", SECRET, {"KRW": "100000000", "ETH": "5"}),
                         step_hz=5)
    try:
        settings.LIVE_MODE = True
        settings.LIVE_MODE_CONFIRM = "I understand this sends real orders"
        settings.SECRET_KEY = "a-real-secret-key-for-this-test-only-0123456789"
        settings.UPBIT_API_KEY = settings.BINANCE_API_KEY = "e2e-key"
        settings.UPBIT_SECRET_KEY = settings.BINANCE_SECRET_KEY = SECRET
        settings.UPBIT_REST_URL, settings.BINANCE_REST_URL = thread.server.upbit_url, thread.server.binance_url
        engine.forget_limits()
        ex = engine.default_executor(state, engine.fees())
        assert reconcile(state, ex.venues)["ok"]
        feeds = [UpbitFeed(state, ["ETH"], **feed_kwargs(thread, "upbit")), BinanceFeed(state, ["ETH"], **feed_kwargs(thread, "binance"))]
        with RunningFeed(feeds[0]), RunningFeed(feeds[1]):
            wait_for(lambda: state.get_book("upbit", "ETH") and state.get_book("binance", "ETH") and state.get_fx("upbit"))
            thread.call(thread.server.control, None, "premium", symbol="ETH", premium=0.03)
            outcome = wait_for(lambda: (r := engine.evaluate_symbol("ETH", state=state)) == "executed" and r, timeout=10)
        assert outcome == "executed"
        pair = Pair.objects.get(symbol="ETH")
        assert pair.mode == "live" and pair.state == "filled" and (pair.buy_exchange, pair.sell_exchange) == ("binance", "upbit")
        assert thread.server.accounts.upbit["e2e-key"].balances["ETH"] == D("5") - pair.quantity  # the venue really sold
        assert reconcile(state, ex.venues)["ok"]  # and the ledger agrees with both venues, to the unit
        # The kill switch's flatten closes the position with a live reverse pair.
        from trading import exits

        assert exits.flatten_all(state) == ["ETH"]
        close = Pair.objects.get(symbol="ETH", kind="close")
        assert close.mode == "live" and close.quantity > 0 and close.stage == "closed"
        assert not Position.objects.filter(symbol="ETH").exists() or Position.objects.get(symbol="ETH").quantity < pair.quantity
        assert reconcile(state, ex.venues)["ok"]
    finally:
        engine.forget_limits()
        thread.stop()


def _dead_worker_pair(state, venue, ads):
    """A pair whose legs were recorded (and maybe sent) by a worker that then died."""
    ex = executor(state, ads)
    ask, bid = tops(venue)
    pair = Pair.objects.create(symbol="BTC", buy_exchange="binance", sell_exchange="upbit", mode="live")
    ex._record_legs(pair, PairRequest("BTC", "binance", "upbit", D("0.01"), ask, bid, D("1400"), D("0.00001")))
    Pair.objects.filter(pk=pair.pk).update(lease_until=None)  # its lease ran out with the worker
    return Pair.objects.get(pk=pair.pk), ask, bid


def test_a_worker_killed_after_the_first_leg_is_resumed_and_unwound(state, venue):
    ads = adapters(venue)
    ads["upbit"].absent_after_s = 0
    pair, ask, _bid = _dead_worker_pair(state, venue, ads)
    # The dead worker had sent only the buy leg.
    ads["binance"].submit(LegOrder("BTC", "buy", D("0.01"), ask * D("1.003"), leg_ids(pair)[0]))
    [settled] = resume_pending(state, executor(state, ads))
    assert (settled.state, settled.stage) == ("failed", "closed") and "unwound" in settled.note
    assert Order.objects.get(pair=pair, exchange="upbit").status == "absent"  # never reached Upbit
    assert net_base(settled) == 0


def test_a_worker_killed_after_both_legs_is_resumed_and_completed(state, venue):
    ads = adapters(venue)
    pair, ask, bid = _dead_worker_pair(state, venue, ads)
    buy_id, sell_id = leg_ids(pair)
    ads["binance"].submit(LegOrder("BTC", "buy", D("0.01"), ask * D("1.003"), buy_id))
    ads["upbit"].submit(LegOrder("BTC", "sell", D("0.01"), bid * D("0.997"), sell_id))
    [settled] = resume_pending(state, executor(state, ads))
    assert settled.state == "filled" and settled.quantity == D("0.01") and net_base(settled) == 0
    assert Position.objects.get(symbol="BTC").quantity == D("0.01")
    assert resume_pending(state, executor(state, ads)) == []  # settled once
    assert Fill.objects.filter(order__pair=pair).count() == 2


def test_an_unwind_refused_for_a_moment_is_flagged_then_finished_by_a_later_resume(state, venue):
    """The chaos soak's finding: three hedges refused within milliseconds left a pair flagged for good,
    and every resume engaged the kill switch again. Now: the hedges back off, the flag is raised once,
    and a resume after the venue recovers finishes the unwind."""
    from liveguard.models import AuditLog

    venue.server.accounts.upbit["live-key"].balances["BTC"] = D(0)  # the Upbit sell is refused
    venue.call(venue.server.control, "binance", "fault", method="POST", path="/api/v3/order", kind="refuse_418",
               skip=1, count=3, retry_after=120)  # and so are the next three orders on Binance: the hedges
    pair = run(state, venue, D("0.01"), executor(state, adapters(venue)))
    assert (pair.state, pair.stage) == ("pending", "flagged") and "UNHEDGED" in pair.note
    assert Order.objects.filter(pair=pair, role="hedge", status="rejected").count() == 3
    engaged = AuditLog.objects.filter(model="KillSwitch", new_value="True").count()
    assert KillSwitch.load().engaged and GuardEvent.objects.filter(check_name="leg_risk").count() == 1
    venue.call(venue.server.control, None, "clear_faults")
    Pair.objects.filter(pk=pair.pk).update(lease_until=None)
    [settled] = resume_pending(state, executor(state, adapters(venue)))
    assert (settled.state, settled.stage) == ("failed", "closed") and net_base(settled) == 0
    assert AuditLog.objects.filter(model="KillSwitch", new_value="True").count() == engaged  # not engaged again
    assert GuardEvent.objects.filter(check_name="leg_risk").count() == 1
