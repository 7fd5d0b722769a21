"""Issue 13, notifications: each alert fires exactly once per incident and resolves once, into a
real local HTTP server receiving apprise's json:// posts; a failing server is retried and then the
failure is recorded, logged and itself reported; the rate limit holds and the excess is counted."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from arbproject.celery import app as celery_app
from liveguard import notify
from liveguard.models import AlertEvent, AuditLog, KillSwitch, Notification, NotificationChannel
from liveguard.services import set_kill_switch
from liveguard.tasks import deliver
from trading import alerting
from trading.models import EquitySnapshot, Pair
from trading.state import MetricsRecord

pytestmark = pytest.mark.django_db

SECRET = "s3cretHookToken42"


class Capture(ThreadingHTTPServer):
    """A webhook receiver: records every post; answers with the next queued status (200 when none)."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.posts: list[dict] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server_address[1]}/hook/{SECRET}"

    def titles(self) -> list[str]:
        return [post["title"] for post in self.posts]


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.posts.append(body)
            status = self.server.statuses.pop(0) if self.server.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def capture(settings):
    server = Capture()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.NOTIFY_URLS = [server.url]
    settings.NOTIFY_RATE_PER_MINUTE = 100
    settings.NOTIFY_MAX_ATTEMPTS = 3
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def eager():
    """The notify queue's tasks run at once, in the test (retries included)."""
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


@pytest.fixture
def cycle(state, eager, django_capture_on_commit_callbacks, monkeypatch):
    """One watch cycle as beat runs it."""
    monkeypatch.setattr(alerting.engine, "get_state", lambda: state)

    def run(times: int = 1) -> None:
        for _ in range(times):
            with django_capture_on_commit_callbacks(execute=True):
                alerting.watch_alerts()

    return run


def metrics(pnl_today: str) -> MetricsRecord:
    return MetricsRecord(total_balance=D("100000000"), available_balance=D("100000000"), positions_count=0, orders_count=0,
                         daily_loss=D(0), total_loss=D(0), trades_today=0, pnl_today=D(pnl_today))


def flagged_pair(symbol: str = "BTC") -> Pair:
    return Pair.objects.create(symbol=symbol, buy_exchange="binance", sell_exchange="upbit", mode="live",
                               stage=Pair.Stage.FLAGGED, note="UNRESOLVED: sell leg unknown")


OPENED = {"Kill switch engaged", "Circuit breaker tripped", "Heartbeat lost: feed_binance", "Reconciliation failing",
          "Daily loss at 80 % of its limit"}


def test_each_alert_fires_once_per_incident_and_resolves_once(capture, cycle, state, settings):
    settings.LIVE_MODE = True  # reconciliation is watched in live mode only
    now = datetime.now(UTC)
    set_kill_switch(state, True, reason="operator test")
    state.trip_breaker("loss 5.2 % of balance", 300)
    state.beat("feed_upbit", at=now)
    state.beat("feed_binance", at=now - timedelta(seconds=40))
    state.set_reconciliation({"ok": False, "differences": ["upbit BTC: ledger 1 venue 0.9"]})
    state.set_metrics(metrics("-420000"))  # 84 % of the default 500,000 KRW limit
    pair = flagged_pair()

    cycle(times=3)

    assert sorted(capture.titles()) == sorted(OPENED | {f"Leg risk: pair {pair.id} unhedged"})
    assert Notification.objects.filter(status="sent").count() == 6
    body = next(p["message"] for p in capture.posts if p["title"] == "Kill switch engaged")
    assert "operator test" in body

    set_kill_switch(state, False)
    state.reset_breaker()
    state.beat("feed_binance")
    state.set_reconciliation({"ok": True, "differences": []})
    state.set_metrics(metrics("-100000"))
    Pair.objects.filter(pk=pair.pk).update(stage=Pair.Stage.CLOSED)

    cycle(times=3)

    resolved = capture.titles()[6:]
    assert sorted(resolved) == sorted(["Kill switch released", "Circuit breaker reset", "Resolved: Heartbeat lost: feed_binance",
                                       "Resolved: Reconciliation failing", "Resolved: Daily loss at 80 % of its limit",
                                       f"Resolved: Leg risk: pair {pair.id} unhedged"])
    # Delivering an already delivered notification again sends nothing (a redelivered task).
    for notification in Notification.objects.all():
        assert deliver.apply(args=[notification.pk]).get() == "sent"
    assert len(capture.posts) == 12

    # The same condition again later is a new incident: it fires again, once.
    set_kill_switch(state, True, reason="again")
    cycle(times=2)
    assert capture.titles()[12:] == ["Kill switch engaged"]


def test_daily_loss_warning_does_not_flap_at_the_line(capture, cycle, state):
    for pnl in ("-400000", "-395000", "-401000", "-360000"):  # 80 %, then between 70 % and 80 %
        state.set_metrics(metrics(pnl))
        cycle()
    assert capture.titles() == ["Daily loss at 80 % of its limit"]
    state.set_metrics(metrics("-340000"))  # under 70 %: resolved
    cycle()
    assert capture.titles() == ["Daily loss at 80 % of its limit", "Resolved: Daily loss at 80 % of its limit"]


def test_failing_server_is_retried_then_marked_failed_and_logged(capture, cycle, state, caplog):
    capture.statuses = [500, 500, 500]
    set_kill_switch(state, True, reason="x")
    with caplog.at_level(logging.WARNING):
        cycle()

    assert capture.titles() == ["Kill switch engaged"] * 3  # NOTIFY_MAX_ATTEMPTS
    row = Notification.objects.get()
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.last_error and SECRET not in row.last_error
    failed = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "liveguard.notify"]
    assert failed and "failed after 3 attempt(s)" in failed[0].getMessage()
    assert SECRET not in caplog.text

    # The failure is itself an incident, reported once (here: once the server answers again).
    cycle(times=3)
    assert capture.titles()[3:] == ["Notifications failing"]
    assert "1 notification(s) failed" in capture.posts[-1]["message"]


def test_a_failed_attempt_is_retried_until_delivered(capture, cycle, state):
    capture.statuses = [500, 503]
    set_kill_switch(state, True, reason="x")
    cycle()
    row = Notification.objects.get()
    assert (row.status, row.attempts, len(capture.posts)) == ("sent", 3, 3)


def test_rate_limit_suppresses_the_excess_and_the_next_message_counts_it(capture, cycle, state, settings, monkeypatch):
    settings.NOTIFY_RATE_PER_MINUTE = 2
    for symbol in ("BTC", "ETH", "XRP", "SOL"):
        flagged_pair(symbol)
    cycle()

    assert len(capture.posts) == 2
    assert sorted(Notification.objects.values_list("status", flat=True)) == ["sent", "sent", "suppressed", "suppressed"]

    later = notify.time.time() + 60
    monkeypatch.setattr(notify.time, "time", lambda: later)  # the next minute's window
    set_kill_switch(state, True, reason="x")
    cycle()
    assert len(capture.posts) == 3
    assert "+2 more alerts held back by the rate limit" in capture.posts[-1]["message"]


def test_channels_from_the_admin_take_only_their_kinds(capture, cycle, state, settings):
    settings.NOTIFY_URLS = []
    NotificationChannel.objects.create(name="ops", url=capture.url, kinds=["breaker"])
    NotificationChannel.objects.create(name="off", url=capture.url, enabled=False)
    set_kill_switch(state, True, reason="x")
    state.trip_breaker("loss", 300)
    cycle()
    assert capture.titles() == ["Circuit breaker tripped"]
    assert list(Notification.objects.values_list("channel", flat=True)) == ["ops"]


def test_daily_summary_is_sent_once_per_day(capture, eager, monkeypatch, django_capture_on_commit_callbacks):
    end = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)  # 00:00 KST on the 4th
    for at, equity in ((end - timedelta(days=1), "100000000"), (end, "100250000")):
        snap = EquitySnapshot.objects.create(taken_at=at, equity=D(equity), flows=D("100000000"), realized=0, unrealized=0,
                                             fx_rate=D("1400"))
        assert snap.pk
    monkeypatch.setattr(alerting, "start_of_trading_day", lambda now=None, _real=alerting.start_of_trading_day: _real(now or end))
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            alerting.daily_summary()
    assert capture.titles() == ["Daily summary 2026-12-03 (Asia/Seoul)"]
    assert "P&L (equity change less flows): 250,000 KRW" in capture.posts[0]["message"]
    assert AlertEvent.objects.filter(kind="daily_summary").count() == 1


def test_channel_url_is_never_shown_in_the_admin(admin_client, capture):
    channel = NotificationChannel.objects.create(name="ops", url=capture.url)
    listing = admin_client.get("/admin/liveguard/notificationchannel/").content.decode()
    form = admin_client.get(f"/admin/liveguard/notificationchannel/{channel.pk}/change/").content.decode()
    assert "json://•••" in listing
    assert SECRET not in listing and SECRET not in form

    # Saved with the URL left blank, the channel keeps its URL; the audit row is masked.
    response = admin_client.post(f"/admin/liveguard/notificationchannel/{channel.pk}/change/",
                                 {"name": "ops", "url": "", "enabled": "on", "kinds": "[]"})
    assert response.status_code == 302
    channel.refresh_from_db()
    assert channel.url == capture.url
    audit = AuditLog.objects.get(model="NotificationChannel")
    assert SECRET not in audit.old_value + audit.new_value


def test_a_notification_stuck_without_a_notify_worker_is_an_incident(capture, state):
    set_kill_switch(state, True, reason="x")
    ids = notify.track(alerting.observe(state))  # queued, but no worker takes it
    assert len(ids) == 1
    Notification.objects.filter(pk=ids[0]).update(created_at=datetime.now(UTC) - timedelta(minutes=5))
    notify.track(alerting.observe(state))
    assert AlertEvent.objects.filter(kind="notify", action="opened").count() == 1


def test_the_kill_switch_state_is_read_from_the_database(state):
    """The mirror may lag or be flushed; the alert follows the committed switch."""
    KillSwitch.objects.update_or_create(pk=1, defaults={"engaged": True, "reason": "db"})
    state.set_kill_switch(False)
    assert alerting.observe(state).kill_switch is True


def test_the_daily_summary_is_scheduled_at_midnight_kst():
    from zoneinfo import ZoneInfo

    entry = celery_app.conf.beat_schedule["daily-summary"]
    assert celery_app.conf.timezone in (None, "UTC")  # CELERY_TIMEZONE
    midnight_kst = datetime(2026, 12, 4, 0, 0, tzinfo=ZoneInfo("Asia/Seoul")).astimezone(UTC)
    assert entry["schedule"].hour == {midnight_kst.hour} and entry["schedule"].minute == {0}


def test_status_text_says_what_is_wrong(state):
    state.trip_breaker("loss 5 %", 300)
    state.set_metrics(metrics("-1000"))
    text = alerting.status_text(state)
    assert "Kill switch: released" in text and "Circuit breaker: tripped: loss 5 %" in text
    assert "P&L today: -1,000 KRW (daily loss limit 500,000)" in text
