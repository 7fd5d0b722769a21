"""Issue 11 §3: every control body goes through a DRF serializer: any JSON value answers JSON, never a 5xx."""

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.django_db

ENDPOINTS = [("post", "/control/kill-switch"), ("post", "/control/flatten"), ("patch", "/control/limits"),
             ("post", "/control/symbols/BTC/pause"), ("post", "/control/symbols/BTC/resume")]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-10**40, max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=25), children, max_size=4),
    max_leaves=12,
)
limit_names = st.sampled_from(["min_spread_pct", "max_daily_loss", "max_trades_per_hour", "stop_loss_pct", "engaged",
                               "reason", "flatten", "max_inventory_pct", "circuit_breaker_threshold_pct"])
bodies = json_values | st.dictionaries(limit_names, json_values, max_size=4)


@pytest.fixture
def root(state, market, monkeypatch):
    market("BTC")
    monkeypatch.setattr("trading.wiring.current_app.send_task", lambda *a, **k: None)
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw"))
    return client


@pytest.mark.parametrize("body", [[], ["x"], "x", 1, 10**30, None, {"reason": ["x"]}, {"engaged": {"a": 1}}])
@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_odd_bodies_answer_json(root, method, path, body):
    response = getattr(root, method)(path, json.dumps(body), content_type="application/json")
    assert response.status_code < 500
    assert response["Content-Type"].startswith("application/json")
    response.json()


def test_a_list_body_to_pause_is_a_400(root):
    response = root.post("/control/symbols/BTC/pause", "[]", content_type="application/json")
    assert response.status_code == 400 and "error" in response.json()
    response = root.post("/control/symbols/BTC/pause", '"x"', content_type="application/json")
    assert response.status_code == 400


def test_malformed_json_is_a_json_400(root):
    for method, path in ENDPOINTS:
        response = getattr(root, method)(path, "{not json", content_type="application/json")
        assert response.status_code == 400 and response.json()["error"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(ENDPOINTS), body=bodies)
def test_any_json_body_never_5xx(root, endpoint, body):
    method, path = endpoint
    response = getattr(root, method)(path, json.dumps(body), content_type="application/json")
    assert response.status_code < 500, (path, body, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    response.json()
