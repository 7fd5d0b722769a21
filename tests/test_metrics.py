"""GET /metrics (issue 13): the read check, the shared state read at scrape time, process-local
instruments added up across processes, and the counters moving in a run against the venue."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.authtoken.models import Token

from arbproject.prometheus import HOST
from liveguard import telemetry as guard_telemetry
from liveguard.services import set_kill_switch
from tests.conftest import RunningFeed, feed_kwargs, wait_for
from trading import telemetry
from trading.state import FeedStats, MetricsRecord

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.django_db


def scrape(client: Client | None = None, **headers) -> dict[tuple[str, tuple], float]:
    """The exposition as {(sample name, sorted labels): value}."""
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.content.decode()) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_metrics_need_the_read_token_once_one_is_set(settings, state):
    settings.API_READ_TOKEN = "read-secret"
    client = Client()
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    samples = scrape(client, HTTP_AUTHORIZATION="Bearer read-secret")
    assert value(samples, "kimp_state_up") == 1
    user = User.objects.create_user("reader", password="x" * 20)
    assert scrape(client, HTTP_AUTHORIZATION=f"Bearer {Token.objects.create(user=user).key}")  # a user's own token
    client.force_login(user)
    assert scrape(client)  # or a logged-in user


def test_metrics_are_not_in_the_openapi_schema(state):
    schema = Client().get("/api/schema/?format=json").json()
    assert "/metrics" not in schema["paths"] and "/metrics/live" in schema["paths"]


def test_shared_state_is_read_at_scrape_time(state, market):
    market("BTC", age_ms=1500)
    state.write_market((), stats=FeedStats("upbit", messages=42, malformed=2, resyncs=1, reconnects=3, connected=1))
    state.beat("worker", datetime.now(UTC) - timedelta(seconds=4))
    state.set_metrics(MetricsRecord(D("100"), D("90"), 0, 0, D("1200"), D("0"), 0, equity=D("123456789"),
                                    pnl_today=D("-1200")))
    state.set_exposure("BTC", 700_000)
    state.set_reconciliation({"ok": False, "differences": ["upbit KRW: ledger 1 venue 2"]})
    state.trip_breaker("test", 30)
    set_kill_switch(state, True, reason="test")
    state.redis.rpush("celery", "m1", "m2")
    state.redis.zadd("arbitrage:index:premiums", {"BTC": 1})  # the coins: those with a premium, and FEED_SYMBOLS

    samples = scrape()
    assert value(samples, "kimp_feed_messages_total", venue="upbit") == 42
    assert value(samples, "kimp_feed_malformed_total", venue="upbit") == 2
    assert value(samples, "kimp_feed_reconnects_total", venue="upbit") == 3
    assert value(samples, "kimp_feed_resyncs_total", venue="upbit") == 1
    assert value(samples, "kimp_feed_connected", venue="upbit") == 1
    assert 1.4 < value(samples, "kimp_book_age_seconds", venue="binance", coin="BTC") < 10
    assert 3.9 < value(samples, "kimp_heartbeat_age_seconds", component="worker") < 10
    assert value(samples, "kimp_equity_krw") == 123456789
    assert value(samples, "kimp_daily_loss_krw") == 1200
    assert value(samples, "kimp_daily_loss_limit_krw") == 500000
    assert value(samples, "kimp_exposure_krw", coin="BTC") == 700_000
    assert value(samples, "kimp_exposure_total_krw") == 700_000
    assert value(samples, "kimp_kill_switch_engaged") == 1
    assert value(samples, "kimp_breaker_tripped") == 1
    assert value(samples, "kimp_reconciliation_differences") == 1 and value(samples, "kimp_reconciliation_ok") == 0
    assert value(samples, "kimp_reconciliation_age_seconds") < 5
    assert value(samples, "kimp_celery_queue_length", queue="celery") == 2
    assert value(samples, "kimp_pairs_open", stage="flagged") == 0


def test_an_unreachable_broker_leaves_out_the_queues_not_the_scrape(state, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    samples = scrape()
    assert value(samples, "kimp_state_up") == 1
    assert ("kimp_celery_queue_length", (("queue", "celery"),)) not in samples


def test_instruments_do_nothing_when_metrics_are_disabled(settings):
    before = REGISTRY.get_sample_value("kimp_pairs_total", {"outcome": "partial"})
    telemetry.count_pair("partial")
    assert REGISTRY.get_sample_value("kimp_pairs_total", {"outcome": "partial"}) == before + 1
    settings.METRICS_ENABLED = False
    telemetry.count_pair("partial")
    telemetry.observe_tick_to_signal(0.001)
    guard_telemetry.count_rejection("kill_switch")
    assert REGISTRY.get_sample_value("kimp_pairs_total", {"outcome": "partial"}) == before + 1


def test_an_instrument_that_fails_never_fails_the_trading_path(monkeypatch, caplog):
    class Broken:
        def labels(self, *_):
            raise OSError("no space left for the metrics file")

    monkeypatch.setattr(telemetry, "PAIRS", Broken())
    monkeypatch.setattr(guard_telemetry, "REJECTIONS", Broken())
    telemetry.count_pair("filled")
    guard_telemetry.count_rejection("kill_switch")
    assert "count_pair failed" in caplog.text and "guard rejection not counted" in caplog.text


COUNT_IN_ANOTHER_PROCESS = """
import django
django.setup()
from trading import telemetry
from arbproject.prometheus import HOST
from liveguard import telemetry as guard_telemetry
for _ in range(3):
    telemetry.count_pair("filled")
telemetry.observe_tick_to_signal(0.004)
guard_telemetry.count_rejection("daily_loss")
"""


def another_process_counts(directory: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "DJANGO_SETTINGS_MODULE": "arbproject.settings"}
    subprocess.run([sys.executable, "-c", COUNT_IN_ANOTHER_PROCESS], cwd=ROOT, env=env, check=True, timeout=60)


def test_values_written_by_other_processes_are_added_up(settings, state, tmp_path):
    settings.PROMETHEUS_MULTIPROC_DIR = str(tmp_path)
    another_process_counts(tmp_path)
    another_process_counts(tmp_path)
    samples = scrape()
    assert value(samples, "kimp_pairs_total", outcome="filled") == 6
    assert value(samples, "kimp_tick_to_signal_seconds_count") == 2
    assert value(samples, "kimp_tick_to_signal_seconds_bucket", le="0.005") == 2
    assert value(samples, "kimp_tick_to_signal_seconds_bucket", le="0.003") == 0
    assert value(samples, "kimp_guard_rejections_total", check="daily_loss") == 2
    assert value(samples, "kimp_state_up") == 1  # the shared state beside them, in one exposition
    # Named by host and pid: containers sharing the directory number their processes alike.
    files = list(tmp_path.glob("*.db"))
    assert files and all(f.stem.split("_", 1)[1].startswith(f"{HOST}-") for f in files), files


# --- against the venue -------------------------------------------------------------------------
SYMBOLS = ["BTC", "ETH"]


@pytest.fixture
def calm_venue():
    """The venue without random premium jumps: only the test makes a pair worth trading."""
    from marketdata.venue.core import Venue
    from marketdata.venue.market import MarketModel, ModelParams
    from marketdata.venue.server import VenueServer, VenueThread

    thread = VenueThread(VenueServer(Venue(MarketModel(seed=11, params=ModelParams(jump_rate=0)), step_hz=20))).start()
    yield thread
    thread.stop()


def fed(samples: dict) -> dict | None:
    """The scrape, once both feeds have published their statistics."""
    return samples if all(value(samples, "kimp_feed_messages_total", venue=v) for v in ("upbit", "binance")) else None


def moved(first: dict, now: dict) -> dict | None:
    """The later scrape, once both feeds' message counts rose and a filled pair was counted."""
    fed = all(value(now, "kimp_feed_messages_total", venue=v) > value(first, "kimp_feed_messages_total", venue=v)
              for v in ("upbit", "binance"))
    return now if fed and value(now, "kimp_pairs_total", outcome="filled") >= 1 else None


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_counters_move_in_a_run_against_the_venue(calm_venue, state, redis_url, settings, tmp_path, monkeypatch):
    from marketdata.feeds.binance import BinanceFeed
    from marketdata.feeds.upbit import UpbitFeed
    from tests.test_e2e_paper import force_premium, start_workers, stop_workers
    from trading.dispatcher import Dispatcher
    from trading.models import Pair
    from trading.tasks import evaluate_changed

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # the worker process writes there
    settings.PROMETHEUS_MULTIPROC_DIR = str(tmp_path)  # and this process's /metrics reads it
    workers = start_workers(redis_url, 1)
    feeds = [UpbitFeed(state, SYMBOLS, max_backoff=0.2, **feed_kwargs(calm_venue, "upbit")),
             BinanceFeed(state, SYMBOLS, max_backoff=0.2, **feed_kwargs(calm_venue, "binance"))]
    dispatcher = Dispatcher(state, lambda: evaluate_changed.apply_async(expires=10))
    thread = threading.Thread(target=dispatcher.run, daemon=True)
    try:
        with RunningFeed(feeds[0]), RunningFeed(feeds[1]):
            thread.start()
            wait_for(lambda: all(state.get_premium(s) for s in SYMBOLS), timeout=20)
            first = wait_for(lambda: fed(scrape()), timeout=10)
            force_premium(calm_venue, "ETH", 0.03)
            wait_for(lambda: Pair.objects.filter(symbol="ETH", stage="closed").exists(), timeout=15)
            second = wait_for(lambda: moved(first, scrape()), timeout=10)  # feeds publish statistics as they beat
            dispatcher.stop()
            thread.join(5)
    finally:
        stop_workers(workers)
    for venue in ("upbit", "binance"):
        assert value(second, "kimp_feed_connected", venue=venue) == 1
        assert value(second, "kimp_book_age_seconds", venue=venue, coin="ETH") < 5
        assert value(second, "kimp_leg_seconds_count", venue=venue) >= 1  # observed in the worker process
    assert value(second, "kimp_pair_seconds_count") >= 1
    evaluate_runs = [v for (name, labels), v in second.items()
                     if name == "kimp_celery_task_seconds_count" and ("task", "trading.tasks.evaluate_changed") in labels]
    assert evaluate_runs and sum(evaluate_runs) >= 1
