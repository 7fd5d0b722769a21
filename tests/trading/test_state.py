from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import orjson

from trading.state import (
    TICKS_CHANNEL,
    BookRecord,
    ExecutionRecord,
    FeedStats,
    FxRecord,
    MetricsRecord,
    OrderRecord,
    PositionRecord,
    PriceRecord,
    SignalRecord,
)

NOW = datetime(2026, 11, 25, 1, 2, 3, 456789, tzinfo=UTC)


def test_price_book_and_fx_round_trip_in_one_write_with_spec_ttls(state, redis_client):
    price = PriceRecord("upbit", "BTC", D("131894000"), D("131895000"), D("131894500"), NOW, NOW)
    book = BookRecord("upbit", "BTC", [(D("131894000"), D("0.5"))], [(D("131895000"), D("1.25"))], NOW, NOW)
    fx = FxRecord("upbit", D("1385.75"), D("1385.5"), D("1386"), NOW)
    pubsub = redis_client.pubsub()
    pubsub.subscribe(TICKS_CHANNEL)
    pubsub.get_message(timeout=1)
    state.write_market([price], [book], [fx], notify=["upbit:BTC"], heartbeat="feed_upbit")
    assert state.get_price("upbit", "BTC") == price
    assert state.get_book("upbit", "BTC") == book
    assert state.get_fx("upbit") == fx
    assert state.heartbeat("feed_upbit") is not None
    assert redis_client.ttl("arbitrage:prices:upbit:BTC") == 60
    assert redis_client.ttl("arbitrage:book:upbit:BTC") == 60
    assert redis_client.ttl("arbitrage:heartbeat:feed_upbit") == 60
    assert redis_client.hgetall("arbitrage:prices:upbit:BTC")[b"timestamp"] == NOW.isoformat().encode()
    message = pubsub.get_message(timeout=1)
    assert orjson.loads(message["data"]) == ["upbit:BTC"]


def test_signal_round_trips_with_ttl_300_and_is_listed(state, redis_client):
    signal = SignalRecord("ETH", "binance", "upbit", D("4850000"), D("4900000"), D("50000"), D("1.0309"), NOW,
                          quantity=D("0.1"), net_spread_pct=D("0.88"))
    state.save_signal(signal)
    assert state.get_signal("ETH") == signal
    assert redis_client.ttl("arbitrage:signal:ETH") == 300
    assert state.list_signals() == [signal]


def test_a_batch_stores_and_announces_its_signals_as_save_signal_does(state, redis_client):
    """The screen stores a batch's signals in its one script; the hash, its TTL, the index and the
    announcement are those of save_signal."""
    signal = SignalRecord("ETH", "binance", "upbit", D("4850000"), D("4900000"), D("50000"), D("1.0309"), NOW,
                          quantity=D("0.1"), net_spread_pct=D("0.88"), tick_received_at=NOW)
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("arbitrage:signals")
    pubsub.get_message(timeout=1)
    state.save_signal(signal)
    single = (redis_client.hgetall("arbitrage:signal:ETH"), orjson.loads(pubsub.get_message(timeout=1)["data"]))
    redis_client.delete("arbitrage:signal:ETH", "arbitrage:index:signals")
    state.save_evaluations([], [signal], 60)
    batched = (redis_client.hgetall("arbitrage:signal:ETH"), orjson.loads(pubsub.get_message(timeout=1)["data"]))
    assert batched == single
    assert redis_client.ttl("arbitrage:signal:ETH") == 300 and 0 < redis_client.ttl("arbitrage:index:signals") <= 300
    assert state.list_signals() == [signal]
    pubsub.close()


def test_order_position_execution_and_metrics_round_trip(state, redis_client):
    order = OrderRecord("o-1", "upbit", "BTC", "buy", D("0.01"), D("131895000"), "filled", D("0.01"), D("1"), NOW, NOW)
    position = PositionRecord("BTC", D("0.01"), D("131895000"), D("131900000"), "long", D("50"), D("0.0038"), NOW)
    execution = ExecutionRecord("BTC", "o-1", "o-2", D("131895000"), D("133000000"), D("0.01"), D("11050"),
                                D("10000"), D("1050"), D("0.75"), NOW)
    metrics = MetricsRecord(D("10000000"), D("9000000"), 1, 2, D("0"), D("0"), 3, NOW)
    state.save_order(order)
    state.save_position(position)
    key = state.save_execution(execution)
    state.set_metrics(metrics)
    assert state.get_order("o-1") == order
    assert state.list_orders() == [order]
    assert state.get_position("BTC") == position
    assert state.list_positions() == [position]
    assert state.list_executions("BTC") == [execution]
    assert state.get_metrics() == metrics
    assert redis_client.ttl("arbitrage:orders:o-1") == 86400
    assert redis_client.ttl("arbitrage:positions:BTC") == 86400
    assert redis_client.ttl(key) == 86400
    assert key == f"arbitrage:execution:BTC:{NOW.isoformat()}"
    assert redis_client.ttl("arbitrage:metrics:live") == 300
    state.delete_position("BTC")
    assert state.get_position("BTC") is None and state.list_positions() == []


def test_executions_are_listed_newest_first_with_a_limit(state):
    for i in range(5):
        state.save_execution(ExecutionRecord("XRP", f"b{i}", f"s{i}", D(1), D(2), D(i + 1), D(1), D(1), D(0), D(1),
                                             NOW + timedelta(seconds=i)))
    assert [e.buy_order_id for e in state.list_executions("XRP", limit=2)] == ["b4", "b3"]


def test_missing_keys_read_as_none(state):
    assert state.get_price("upbit", "NOPE") is None
    assert state.get_book("binance", "NOPE") is None
    assert state.get_signal("NOPE") is None
    assert state.get_metrics() is None


def test_heartbeats_lists_components_and_expired_ones_as_none(state, redis_client):
    state.beat("worker", NOW)
    state.beat("beat", NOW)
    redis_client.delete(state.heartbeat_key("beat"))
    assert state.heartbeats() == {"worker": NOW, "beat": None}


def test_feed_stats_round_trip(state):
    stats = FeedStats("binance", 10, 1, 2, 3, 4, 1, NOW)
    state.write_market([], stats=stats)
    assert state.get_feed_stats("binance") == stats


def test_no_float_reaches_redis(state, redis_client):
    price = PriceRecord("binance", "DOGE", D("0.32001"), D("0.32002"), D("0.320015"), NOW)
    state.write_price(price)
    assert redis_client.hget("arbitrage:prices:binance:DOGE", "mid") == b"0.320015"
    assert state.get_book("binance", "DOGE") is None  # a quote without a book writes no book


def test_scripted_write_survives_a_script_cache_flush(state, redis_client):
    price = PriceRecord("upbit", "XRP", D("3050"), D("3051"), D("3050.5"), NOW, NOW)
    state.write_price(price)
    redis_client.script_flush()
    state.write_price(price)
    assert state.get_price("upbit", "XRP") == price


def test_a_lost_script_cache_reruns_only_the_refused_commands(state, redis_client):
    """A batch stores its results and takes the next changes in one pipeline. After SCRIPT FLUSH the
    refused script calls are sent again alone: a claim made once is answered once (the pair is
    queued), a signal is announced once, and the changes are taken."""
    from trading.state.evaluation import BatchResults

    signal = SignalRecord("ETH", "binance", "upbit", D("4850000"), D("4900000"), D("50000"), D("1.0309"), NOW)
    state.write_market((), changed=["ETH"])
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("arbitrage:signals")
    pubsub.get_message(timeout=1)
    redis_client.script_flush()
    results = BatchResults([], [signal], 60, claims=["ETH"], claim_ms=10_000)
    changed, _ = state.take_changed("upbit", results=results)
    assert [s for s, _ in changed] == ["ETH"] and results.claimed == ["ETH"]
    assert pubsub.get_message(timeout=1) is not None and pubsub.get_message(timeout=0.2) is None
    pubsub.close()


def test_record_indexes_are_pruned_and_bounded(state, redis_client, monkeypatch):
    """`arbitrage:index:orders` (and every record index) used to grow without bound (issue 11)."""
    from trading import state as state_module
    from trading.state import indexes

    monkeypatch.setattr(indexes, "INDEX_MAX_MEMBERS", 50)
    for n in range(120):
        state.save_order(OrderRecord(f"o{n}", "upbit", "BTC", "buy", D("1"), D("1"), "filled", D("1"), D("1"), NOW, NOW))
    index = "arbitrage:index:orders"
    assert redis_client.zcard(index) == 50
    newest = {m.decode() for m in redis_client.zrange(index, 0, -1)}
    assert newest == {f"o{n}" for n in range(70, 120)}
    assert 0 < redis_client.ttl(index) <= state_module.TTL_ORDER
    # a member older than the records' TTL goes at the next save, without any listing
    redis_client.zadd(index, {"ancient": 1.0})
    state.save_order(OrderRecord("o120", "upbit", "BTC", "buy", D("1"), D("1"), "filled", D("1"), D("1"), NOW, NOW))
    assert redis_client.zscore(index, "ancient") is None


def test_many_prices_are_read_together_and_missing_ones_left_out(state):
    prices = [PriceRecord(venue, coin, D("1"), D("3"), D("2"), NOW, NOW) for venue in ("upbit", "binance")
              for coin in ("BTC", "ETH")]
    state.write_market(prices, [], [])
    got = state.get_prices([("upbit", "BTC"), ("binance", "ETH"), ("upbit", "NOPE"), ("upbit", "BTC")])
    assert got == {("upbit", "BTC"): prices[0], ("binance", "ETH"): prices[3]}
