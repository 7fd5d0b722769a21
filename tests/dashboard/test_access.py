"""Issue 11 §2: controls follow Django's model permissions, so the admin and the API agree."""

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from liveguard.models import GuardLimits, KillSwitch

pytestmark = pytest.mark.django_db


def login(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def bare_staff(state):
    return User.objects.create_user("bare", password="pw", is_staff=True)


def test_staff_without_permissions_is_refused_by_admin_and_api(bare_staff):
    client = login(bare_staff)
    assert client.get("/admin/liveguard/guardlimits/1/change/").status_code in (302, 403)
    assert client.patch("/control/limits", {"max_trades_per_hour": 7}, content_type="application/json").status_code == 403
    assert client.post("/control/kill-switch", {"engaged": True}, content_type="application/json").status_code == 403
    assert client.post("/control/symbols/BTC/pause", {}, content_type="application/json").status_code == 403
    assert client.post("/control/flatten", {}, content_type="application/json").status_code == 403
    assert client.get("/control/kill-switch").status_code == 403
    assert client.get("/control/limits").status_code == 403
    assert client.get("/control/symbols").status_code == 403
    assert not KillSwitch.load().engaged and GuardLimits.load().max_trades_per_hour == 100


def test_view_permission_reads_but_does_not_change(bare_staff):
    bare_staff.user_permissions.add(Permission.objects.get(codename="view_guardlimits"))
    client = login(User.objects.get(pk=bare_staff.pk))
    assert client.get("/control/limits").status_code == 200
    assert client.patch("/control/limits", {"max_trades_per_hour": 7}, content_type="application/json").status_code == 403


def test_change_permission_changes(bare_staff):
    bare_staff.user_permissions.add(Permission.objects.get(codename="change_guardlimits"),
                                    Permission.objects.get(codename="change_killswitch"))
    client = login(User.objects.get(pk=bare_staff.pk))
    assert client.patch("/control/limits", {"max_trades_per_hour": 7}, content_type="application/json").status_code == 200
    assert client.post("/control/kill-switch", {"engaged": True}, content_type="application/json").status_code == 200
    assert client.post("/control/symbols/BTC/pause", {}, content_type="application/json").status_code == 403


def test_superuser_has_every_control(state, market):
    market("BTC")
    client = login(User.objects.create_superuser("root", password="pw"))
    assert client.get("/control/limits").status_code == 200
    assert client.post("/control/symbols/BTC/pause", {}, content_type="application/json").status_code != 403


def ws_consumer():
    """A consumer driven in-process: frames in, what it would send out."""
    import asyncio

    from dashboard.consumers import LiveConsumer

    sent, snapshots = [], []

    class Probe(LiveConsumer):
        def snapshot(self):
            snapshots.append(1)
            return {"type": "snapshot"}

        async def send_json(self, content, close=False):
            sent.append(content)

    consumer = Probe()
    consumer.scope = {"user": None}
    return consumer, sent, snapshots, asyncio.run


@pytest.mark.parametrize("frame", ["[]", '"x"', "x", "1", "null", '[{"action": "snapshot"}]'])
def test_websocket_non_object_frames_are_answered_with_an_error(frame):
    consumer, sent, snapshots, run = ws_consumer()
    run(consumer.receive(text_data=frame))
    assert sent == [{"type": "error", "error": sent[0]["error"]}] and not snapshots
    run(consumer.receive(bytes_data=b"\x00"))
    assert len(sent) == 2 and not snapshots


def test_websocket_snapshots_are_rate_limited_per_connection(monkeypatch):
    consumer, sent, snapshots, run = ws_consumer()
    monkeypatch.setattr("channels.db.database_sync_to_async", lambda f: f)
    monkeypatch.setattr("dashboard.consumers.database_sync_to_async", lambda f: (lambda: _done(f())))
    for _ in range(20):
        run(consumer.receive(text_data='{"action": "snapshot"}'))
    assert len(snapshots) == 1
    assert sum(1 for m in sent if m.get("type") == "error") == 19


async def _done(value):
    return value


def test_live_mode_without_a_read_token_is_a_system_check_error(settings):
    from liveguard.checks import read_protection_checks

    settings.LIVE_MODE, settings.API_READ_TOKEN = True, ""
    assert [e.id for e in read_protection_checks()] == ["kimp.E004"]
    settings.API_READ_TOKEN = "set"
    assert read_protection_checks() == []
    settings.LIVE_MODE, settings.API_READ_TOKEN = False, ""  # paper mode (make demo) is unaffected
    assert read_protection_checks() == []


def test_the_shared_read_token_is_not_handed_to_pages(state, settings):
    settings.API_READ_TOKEN = "shared-secret-token"
    client = login(User.objects.create_user("viewer", password="pw"))
    response = client.get("/")
    assert response.status_code == 200 and b"shared-secret-token" not in response.content


def test_a_users_own_token_reads_as_token_or_bearer(state, settings):
    from rest_framework.authtoken.models import Token

    settings.API_READ_TOKEN = "shared-secret-token"
    key = Token.objects.create(user=User.objects.create_user("reader", password="pw")).key
    client = Client()
    assert client.get("/positions").status_code in (401, 403)
    assert client.get("/positions", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    assert client.get("/positions", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200
    assert client.get("/positions", HTTP_AUTHORIZATION="Bearer shared-secret-token").status_code == 200
    assert client.get("/positions", HTTP_AUTHORIZATION="Bearer wrong").status_code in (401, 403)


def test_livez_is_open_and_says_nothing_else(settings):
    settings.API_READ_TOKEN = "shared-secret-token"
    response = Client().get("/livez")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
