"""liveguard reaches the trading core only through the hooks trading connects at start-up (issue 12)."""

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from liveguard import ports, services
from liveguard.models import KillSwitch
from trading import tasks, wiring

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent_tasks(monkeypatch):
    sent = []
    monkeypatch.setattr("trading.wiring.current_app.send_task", lambda name, *a, **k: sent.append(name))
    return sent


@pytest.fixture
def root():
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw"))
    return client


def test_trading_connects_the_process_state_at_start_up(state):
    assert ports.state() is wiring.get_state()


def test_a_hook_nobody_connected_is_refused_loudly(monkeypatch):
    monkeypatch.setattr(ports._hooks, "request_flatten", None)
    with pytest.raises(ImproperlyConfigured, match="request_flatten"):
        ports.request_flatten()


def test_an_unknown_hook_name_is_a_programming_error():
    with pytest.raises(TypeError, match="flaten"):
        ports.connect(flaten=lambda: None)


def test_flatten_is_requested_by_the_flatten_tasks_name(root, sent_tasks):
    assert root.post("/control/flatten", {}, content_type="application/json").status_code == 202
    assert sent_tasks == [wiring.FLATTEN_TASK] == [tasks.flatten_positions.name]


def test_the_kill_switch_with_flatten_engages_then_requests_the_flatten(root, state, sent_tasks):
    response = root.post("/control/kill-switch", {"engaged": True, "flatten": True}, content_type="application/json")
    assert response.status_code == 200 and response.json()["flatten"] == "requested"
    assert KillSwitch.load().engaged and sent_tasks == [wiring.FLATTEN_TASK]


def test_a_pause_on_a_coin_the_system_does_not_know_is_404(root, state):
    assert root.post("/control/symbols/NOPE/pause", {}, content_type="application/json").status_code == 404


def test_the_mirror_counts_what_the_trading_database_holds(state):
    report = services.mirror_guard_state(state)
    assert (report["trades_hour"], report["trades_day"], report["exposure_krw"]) == (0, 0, {})
    assert report["rebuilt"] and state.guard_mirrored()
