"""Feed workers against the simulated venue over real sockets, writing to a real Redis."""

import time
from decimal import Decimal

import requests

from marketdata.discovery import common_symbols
from marketdata.feeds.binance import BinanceFeed
from marketdata.feeds.upbit import UpbitFeed
from marketdata.recording import Recorder, read_recording
from marketdata.venue.core import Venue
from marketdata.venue.market import MarketModel
from marketdata.venue.replay import replay
from marketdata.venue.server import VenueServer, VenueThread
from tests.conftest import RunningFeed, feed_kwargs, wait_for

SYMBOLS = ["BTC", "ETH", "XRP"]


def upbit_feed(venue, state, symbols=SYMBOLS, **kw):
    return UpbitFeed(state, symbols, max_backoff=0.2, **feed_kwargs(venue, "upbit"), **kw)


def binance_feed(venue, state, symbols=SYMBOLS, **kw):
    return BinanceFeed(state, symbols, max_backoff=0.2, **feed_kwargs(venue, "binance"), **kw)


def venue_depth(venue, market, limit=5):
    return requests.get(f"{venue.server.binance_url}/api/v3/depth", params={"symbol": market, "limit": limit}, timeout=5).json()


def test_discovers_the_coins_listed_on_both_venues(venue):
    symbols = common_symbols(venue.server.upbit_url, venue.server.binance_url)
    assert symbols == sorted(["BTC", "ETH", "XRP", "SOL", "DOGE", "ADA", "TRX", "LINK", "AVAX", "DOT"])


def test_feeds_fill_redis_within_a_second_with_spec_fields_and_ttls(venue, state, redis_client):
    started = time.monotonic()
    with RunningFeed(upbit_feed(venue, state)), RunningFeed(binance_feed(venue, state)):
        for exchange in ("upbit", "binance"):
            for symbol in SYMBOLS:
                wait_for(lambda e=exchange, s=symbol: state.get_price(e, s), timeout=1.0)
        assert time.monotonic() - started < 1.5
        wait_for(lambda: state.get_fx("upbit"), timeout=1.0)
        price = state.get_price("binance", "BTC")
        assert price.bid < price.ask and price.mid == (price.bid + price.ask) / 2
        raw = redis_client.hgetall("arbitrage:prices:upbit:ETH")
        assert {b"bid", b"ask", b"mid", b"timestamp"} <= set(raw)
        assert 55 <= redis_client.ttl("arbitrage:prices:upbit:ETH") <= 60
        book = state.get_book("upbit", "BTC")
        assert len(book.bids) == 20 and book.bids[0][0] > book.bids[1][0]
        fx = state.get_fx("upbit")
        assert Decimal("1000") < fx.rate < Decimal("2000")
        wait_for(lambda: state.heartbeat("feed_upbit") and state.heartbeat("feed_binance"), timeout=2)


def test_binance_book_matches_the_venue_after_many_diffs(venue, state):
    feed = binance_feed(venue, state, ["ETH"])
    with RunningFeed(feed):
        wait_for(lambda: state.get_price("binance", "ETH"))
        time.sleep(0.5)
        venue.call(venue.server.control, "binance", "pause")
        time.sleep(0.3)
        truth = venue_depth(venue, "ETHUSDT", 20)
        ours = state.get_book("binance", "ETH")
        assert [(str(p), str(q)) for p, q in ours.bids[:20]] == [(str(Decimal(p)), str(Decimal(q))) for p, q in truth["bids"]]
        assert feed.books["ETH"].last_update_id == truth["lastUpdateId"]


def test_gap_in_update_ids_triggers_a_resync(venue, state):
    feed = binance_feed(venue, state, ["BTC"])
    with RunningFeed(feed):
        wait_for(lambda: state.get_price("binance", "BTC"))
        venue.call(venue.server.control, "binance", "skip_update_id", symbol="BTC")
        wait_for(lambda: feed.counts["resyncs"] >= 1)
        wait_for(lambda: feed.books["BTC"].synced)
        venue.call(venue.server.control, "binance", "pause")
        time.sleep(0.3)
        assert feed.books["BTC"].last_update_id == venue_depth(venue, "BTCUSDT")["lastUpdateId"]


def test_malformed_frame_is_counted_and_skipped(venue, state):
    feeds = [binance_feed(venue, state, ["BTC"]), upbit_feed(venue, state, ["BTC"])]
    with RunningFeed(feeds[0]), RunningFeed(feeds[1]):
        wait_for(lambda: state.get_price("binance", "BTC") and state.get_price("upbit", "BTC"))
        venue.call(venue.server.control, None, "malformed")
        wait_for(lambda: all(f.counts["malformed"] >= 1 for f in feeds))
        before = {f.exchange: f.counts["messages"] for f in feeds}
        wait_for(lambda: all(f.counts["messages"] > before[f.exchange] + 5 for f in feeds))
        assert all(f.counts["reconnects"] == 0 for f in feeds)
        wait_for(lambda: state.get_feed_stats("binance") and state.get_feed_stats("binance").malformed >= 1)


def test_dropped_connection_reconnects_and_resubscribes(venue, state):
    feeds = [binance_feed(venue, state, ["XRP"]), upbit_feed(venue, state, ["XRP"])]
    with RunningFeed(feeds[0]), RunningFeed(feeds[1]):
        wait_for(lambda: state.get_price("binance", "XRP") and state.get_price("upbit", "XRP"))
        venue.call(venue.server.control, None, "drop_connections")
        wait_for(lambda: all(f.counts["reconnects"] >= 1 for f in feeds))
        mark = time.time()
        for exchange in ("binance", "upbit"):
            wait_for(lambda e=exchange: state.get_price(e, "XRP").received_at.timestamp() > mark, timeout=3)


def test_server_shutdown_makes_the_binance_feed_reconnect(venue, state):
    feed = binance_feed(venue, state, ["BTC"])
    with RunningFeed(feed):
        wait_for(lambda: state.get_price("binance", "BTC"))
        venue.call(venue.server.control, "binance", "server_shutdown")
        wait_for(lambda: feed.counts["reconnects"] >= 1)
        mark = time.time()
        wait_for(lambda: state.get_price("binance", "BTC").received_at.timestamp() > mark, timeout=3)


def test_binance_feed_answers_server_pings_and_stays_connected(venue, state):
    # Pongs count against Binance's 5 incoming messages per second, so ping at most 4 times a second.
    venue.server.venue.ping_interval = 0.25
    venue.server.binance.pong_timeout = 0.6
    feed = binance_feed(venue, state, ["BTC"])
    with RunningFeed(feed):
        wait_for(lambda: state.get_price("binance", "BTC"))
        time.sleep(2.0)  # 8 pings, 3 pong timeouts
        assert feed.counts["reconnects"] == 0


def test_stale_feed_stops_refreshing_its_keys_so_they_expire(venue, state, redis_client):
    with RunningFeed(upbit_feed(venue, state, ["BTC", "ETH"])):
        wait_for(lambda: state.get_price("upbit", "BTC") and state.get_price("upbit", "ETH"))
        venue.call(venue.server.control, "upbit", "stop_symbol", symbol="BTC")
        time.sleep(0.2)
        frozen = state.get_price("upbit", "BTC")
        time.sleep(2.2)
        assert state.get_price("upbit", "BTC") == frozen
        assert redis_client.pttl("arbitrage:prices:upbit:BTC") <= 58_000  # counting down to expiry
        assert redis_client.pttl("arbitrage:prices:upbit:ETH") > 59_000  # still refreshed


def test_feed_survives_delay_and_keeps_timestamps_from_the_exchange(venue, state):
    with RunningFeed(binance_feed(venue, state, ["BTC"])):
        wait_for(lambda: state.get_price("binance", "BTC"))
        venue.call(venue.server.control, "binance", "delay", seconds=0.3)
        time.sleep(1.0)
        price = state.get_price("binance", "BTC")
        # The exchange's event time is kept, so the guard can see how late the data is.
        assert (price.received_at - price.timestamp).total_seconds() >= 0.25


def test_record_then_replay_reproduces_the_books(tmp_path, venue, state, redis_client):
    path = str(tmp_path / "rec.jsonl")
    recorder = Recorder(path)
    feeds = [upbit_feed(venue, state, ["BTC"], recorder=recorder), binance_feed(venue, state, ["BTC"], recorder=recorder)]
    with RunningFeed(feeds[0]), RunningFeed(feeds[1]):
        wait_for(lambda: state.get_price("upbit", "BTC") and state.get_price("binance", "BTC"))
        time.sleep(0.5)
        venue.call(venue.server.control, None, "pause")
        time.sleep(0.3)
    recorder.close()
    recorded_upbit = state.get_book("upbit", "BTC")
    recorded_binance = state.get_book("binance", "BTC")
    records = list(read_recording(path))
    assert {r["kind"] for r in records} == {"ws", "snapshot"}
    redis_client.flushdb()

    # A second venue with a different seed, driven only by the recording.
    other = VenueThread(VenueServer(Venue(MarketModel(seed=99), step_hz=20), drive=False)).start()
    try:
        applied = other.run(replay(other.server.venue, path, speed=50.0), timeout=30)
        assert applied > 0
        with RunningFeed(upbit_feed(other, state, ["BTC"])), RunningFeed(binance_feed(other, state, ["BTC"])):
            wait_for(lambda: state.get_book("upbit", "BTC"))
            assert state.get_book("upbit", "BTC").bids == recorded_upbit.bids
            assert state.get_book("upbit", "BTC").asks == recorded_upbit.asks
            # Binance's book only streams on change; read the snapshot the feed would start from.
            depth = requests.get(f"{other.server.binance_url}/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 20}, timeout=5).json()
            assert [(Decimal(p), Decimal(q)) for p, q in depth["bids"]] == recorded_binance.bids
    finally:
        other.stop()


def test_connection_is_renewed_before_its_maximum_age(venue, state):
    # Binance cuts connections at 24 h; the feed leaves earlier on its own terms.
    feed = binance_feed(venue, state, ["BTC"], max_connection_age=0.5)
    with RunningFeed(feed):
        wait_for(lambda: feed.counts["reconnects"] >= 2, timeout=5)
        mark = time.time()
        wait_for(lambda: state.get_price("binance", "BTC").received_at.timestamp() > mark, timeout=3)


def test_upbit_snapshot_older_than_the_book_held_is_skipped(state):
    feed = UpbitFeed(state, ["BTC"], ws_url="ws://unused", rest_url="http://unused")
    newer = b'{"ty":"orderbook","cd":"KRW-BTC","tms":2000,"obu":[{"ap":101,"bp":100,"as":1,"bs":1}]}'
    older = b'{"ty":"orderbook","cd":"KRW-BTC","tms":1000,"obu":[{"ap":99,"bp":98,"as":1,"bs":1}]}'
    feed.handle_raw(newer)
    feed.handle_raw(older)
    assert feed.counts["out_of_order"] == 1
    assert feed.books["BTC"].top(1)[0][0][0] == Decimal("100")


def _frame(tms: int, bid_size: str, deep_bid_size: str) -> bytes:
    return (b'{"ty":"orderbook","cd":"KRW-BTC","tms":%d,"obu":[{"ap":101,"bp":100,"as":1,"bs":%s},'
            b'{"ap":102,"bp":99,"as":1,"bs":%s}]}' % (tms, bid_size.encode(), deep_bid_size.encode()))


def test_a_change_below_the_best_levels_marks_only_a_coin_worth_walking(state, redis_client):
    """The premium and the screen read a coin's best levels only: a change deeper in its book marks
    it changed (arbitrage:dirty) only while it is worth walking lately (arbitrage:walking)."""
    from marketdata.store import DIRTY_KEY, REFRESH_S, WALKING_KEY, WALKING_S

    feed = UpbitFeed(state, ["BTC"], ws_url="ws://unused", rest_url="http://unused")

    def flushed(frame) -> bool:
        redis_client.delete(DIRTY_KEY)
        feed.handle_raw(frame)
        feed.flush()
        return redis_client.zscore(DIRTY_KEY, "BTC") is not None

    assert flushed(_frame(1000, "1", "5"))  # a first book
    assert not flushed(_frame(1001, "1", "6"))  # only the second level moved
    feed.marked_at["BTC"] -= REFRESH_S
    assert flushed(_frame(1001, "1", "7"))  # ... but the coin was last marked a while ago: its premium is refreshed
    assert not flushed(_frame(1001, "1", "6"))
    assert state.get_book("upbit", "BTC").bids[1][1] == Decimal("6")  # (the book itself is written all the same)
    assert flushed(_frame(1002, "2", "6"))  # the best bid's size moved
    redis_client.zadd(WALKING_KEY, {"BTC": time.time() - WALKING_S - 1})
    assert not flushed(_frame(1003, "2", "7"))  # worth walking, but too long ago
    redis_client.zadd(WALKING_KEY, {"BTC": time.time()})
    assert flushed(_frame(1004, "2", "8"))  # worth walking lately: every change counts
    feed.reset_books()  # a new connection: its first book is a change whatever it holds
    assert flushed(_frame(1005, "2", "8"))


def test_a_burst_writes_the_coins_worth_walking_first_in_a_round_trip_of_their_own(state, redis_client):
    """In a flush of more books than first_chunk, the coins worth walking lately (near a signal) are
    written, marked and announced first: their tick does not wait behind the burst. The feed learns
    which they are from arbitrage:walking once a second, with its heartbeat."""
    from marketdata.store import WALKING_KEY

    coins = [f"C{i:02d}" for i in range(12)]
    feed = UpbitFeed(state, coins, ws_url="ws://unused", rest_url="http://unused")
    writes = []
    original = state.write_market

    def write_market(prices, books=(), fx=(), **kwargs):
        writes.append(sorted(p.symbol for p in prices))
        return original(prices, books, fx, **kwargs)

    state.write_market = write_market

    def burst(tms: int, few: bool = False):
        for coin in coins[:3] if few else coins:
            feed.handle_raw(b'{"ty":"orderbook","cd":"KRW-%s","tms":%d,"obu":[{"ap":101,"bp":100,"as":1,"bs":%d}]}'
                            % (coin.encode(), tms, tms))
        writes.clear()
        feed.flush()
        return list(writes)

    redis_client.zadd(WALKING_KEY, {"C07": time.time(), "C03": time.time() - 60})  # C03: long ago
    assert burst(1) == [coins]  # the first flush beats and learns the walking coins: all in one write
    assert feed.walking == {"C07"}
    assert burst(2) == [["C07"], [c for c in coins if c != "C07"]]  # the near one first, on its own
    assert state.get_book("upbit", "C07") is not None and state.get_book("upbit", "C11") is not None
    assert burst(3, few=True) == [coins[:3]]  # a flush of few books: one write


def test_the_price_hash_is_rewritten_when_its_bid_or_ask_moves_else_once_a_second(state, redis_client):
    """Most updates move a size, not a price: the book is rewritten on every one, the price hash (bid,
    ask, mid and their times) when the best bid or ask moves, or once REFRESH_S old (its TTL and times
    stay fresh)."""
    from marketdata.store import REFRESH_S, price_key

    feed = UpbitFeed(state, ["BTC"], ws_url="ws://unused", rest_url="http://unused")

    def flushed(frame):
        feed.handle_raw(frame)
        feed.flush()
        return redis_client.hget(price_key("upbit", "BTC"), "timestamp").decode()

    first = flushed(_frame(1000, "1", "5"))
    assert flushed(_frame(1001, "2", "5")) == first  # a size moved: the price hash as it was
    assert state.get_book("upbit", "BTC").bids[0][1] == Decimal("2")  # the book is current
    moved = (b'{"ty":"orderbook","cd":"KRW-BTC","tms":1002,"obu":[{"ap":101,"bp":100.5,"as":1,"bs":2},'
             b'{"ap":102,"bp":99,"as":1,"bs":5}]}')
    second = flushed(moved)  # the best bid moved
    assert second != first and state.get_price("upbit", "BTC").bid == Decimal("100.5")
    feed.priced["BTC"] = (feed.priced["BTC"][0], feed.priced["BTC"][1] - REFRESH_S)
    assert flushed(moved.replace(b"1002", b"1003")) != second  # a second later: rewritten, fresh times
