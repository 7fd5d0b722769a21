"""Every REST endpoint, its 4xx paths, auth, CSRF, the schema, and that no secret ever leaks."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import orjson
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from liveguard.models import AuditLog, KillSwitch, SymbolPause
from trading import engine
from trading.models import Order, Pair
from trading.state import MetricsRecord

pytestmark = pytest.mark.django_db

JUMP = dict(upbit_bids=(("143000000", "1"),), upbit_asks=(("143100000", "1"),),
            binance_bids=(("99000", "1"),), binance_asks=(("99010", "1"),))


@pytest.fixture
def traded(state, market):
    market("BTC", **JUMP)
    market("ETH")
    assert engine.evaluate_symbol("BTC", state=state) == "executed"
    engine.evaluate_symbol("ETH", state=state)
    return Pair.objects.get()


@pytest.fixture
def staff():
    user = User.objects.create_user("ops", password="pw", is_staff=True)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/")  # sets the CSRF cookie
    return client, user


def csrf(client):
    return {"HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value}


def test_read_endpoints_serve_spec_fields_from_redis(client, traded, state):
    state.set_metrics(MetricsRecord(D("1"), D("1"), 1, 2, D("0"), D("0"), 1))
    metrics = client.get("/metrics/live").json()
    assert set(metrics) == {"total_balance", "available_balance", "positions_count", "orders_count", "daily_loss",
                            "total_loss", "trades_today", "timestamp",
                            # the accounting model's figures (docs/ACCOUNTING.md)
                            "equity", "flows", "pnl_today", "pnl_total", "realized", "unrealized"}
    [position] = client.get("/positions").json()
    assert set(position) == {"symbol", "quantity", "entry_price", "current_price", "side", "pnl", "pnl_pct", "timestamp"}
    assert D(client.get("/positions/BTC").json()["quantity"]) == traded.quantity
    signal = client.get("/signals/BTC").json()
    assert {"symbol", "buy_exchange", "sell_exchange", "buy_price", "sell_price", "spread", "spread_pct", "timestamp"} <= set(signal)
    assert [s["symbol"] for s in client.get("/signals").json()] == ["BTC"]
    assert client.get("/signals?history=true").json()[0]["outcome"] == "executed"
    orders = client.get("/orders").json()
    assert len(orders) == 2 and {"order_id", "exchange", "symbol", "side", "quantity", "price", "status", "filled_quantity",
                                 "fill_rate", "created_at", "updated_at"} == set(orders[0])
    assert client.get(f"/orders/{orders[0]['order_id']}").json()["order_id"] == orders[0]["order_id"]
    [execution] = client.get("/executions?symbol=BTC&limit=5").json()
    assert D(execution["net_pnl"]) == traded.net_pnl
    assert {p["symbol"] for p in client.get("/premiums").json()} == {"BTC", "ETH"}


def test_money_is_a_decimal_string(client, traded):
    [execution] = client.get("/executions").json()
    assert isinstance(execution["net_pnl"], str) and D(execution["net_pnl"]) == traded.net_pnl


def test_history_outlives_redis(client, traded, state):
    state.redis.flushdb()  # everything hot has expired
    [execution] = client.get("/executions?symbol=BTC").json()
    assert D(execution["gross_pnl"]) == traded.gross_pnl
    order = Order.objects.first()
    assert client.get(f"/orders/{order.id}").json()["status"] == "filled"
    assert client.get(f"/orders/{order.client_order_id}").status_code == 200


@pytest.mark.parametrize("path", ["/positions/NOPE", "/signals/NOPE", "/executions?symbol=NOPE", "/orders/not-an-order",
                                  "/orders/2b1f2f8e-1111-4c4c-9999-000000000000", "/premiums/NOPE/history"])
def test_unknown_symbol_or_order_is_a_json_404(client, traded, path):
    response = client.get(path)
    assert response.status_code == 404 and response.json()["error"]


def test_known_symbol_without_live_signal_is_404(client, traded):
    assert client.get("/signals/ETH").status_code == 404


@pytest.mark.parametrize("limit", ["abc", "0", "-3", "1.5", "100000"])
def test_bad_limit_is_a_json_400(client, traded, limit):
    response = client.get(f"/executions?limit={limit}")
    assert response.status_code == 400
    assert "limit" in response.json()["fields"]


def test_metrics_before_the_first_beat_is_503(client):
    assert client.get("/metrics/live").status_code == 503


def test_health_is_503_until_every_component_beats(client, state):
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unsafe" and not body["trading_safe"] and body["redis"]["ok"] and body["database"]["ok"]
    for component in ("feed_upbit", "feed_binance", "signals", "worker", "beat"):
        state.beat(component)
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["trading_safe"]
    assert body["feeds"]["upbit"]["ok"] and body["components"]["worker"]["ok"]
    state.beat("feed_binance", datetime.now(UTC) - timedelta(seconds=30))
    assert client.get("/health").status_code == 503


def test_read_token_makes_reads_private(client, traded, settings):
    settings.API_READ_TOKEN = "read-token-123"
    assert client.get("/positions").status_code == 403
    assert client.get("/positions", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/positions", HTTP_AUTHORIZATION="Bearer read-token-123").status_code == 200
    # the detailed health is private too; orchestrators probe /livez, which says nothing else
    assert client.get("/health").status_code == 403
    assert client.get("/health", HTTP_AUTHORIZATION="Bearer read-token-123").status_code in (200, 503)
    assert client.get("/livez").status_code == 200
    for page in ("/", "/board", "/activity"):
        response = client.get(page)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), page


def test_controls_need_staff(client, traded):
    assert client.post("/control/kill-switch", {"engaged": True}, content_type="application/json").status_code == 403
    client.force_login(User.objects.create_user("viewer", password="pw"))
    assert client.post("/control/kill-switch", {"engaged": True}, content_type="application/json").status_code == 403
    assert not KillSwitch.load().engaged


def test_session_writes_need_the_csrf_token(staff, state):
    client, _ = staff
    assert client.post("/control/kill-switch", {"engaged": True}, content_type="application/json").status_code == 403
    response = client.post("/control/kill-switch", {"engaged": True, "reason": "test"}, content_type="application/json", **csrf(client))
    assert response.status_code == 200 and response.json()["engaged"] is True


def test_kill_switch_limits_and_pause_through_the_api(staff, traded, state):
    client, user = staff
    client.post("/control/kill-switch", {"engaged": True}, content_type="application/json", **csrf(client))
    assert KillSwitch.load().engaged and state.kill_switch() is True
    assert AuditLog.objects.filter(model="KillSwitch", user=user).exists()
    assert client.get("/control/kill-switch").json()["changed_by"] == "ops"
    response = client.patch("/control/limits", {"max_trades_per_hour": 7}, content_type="application/json", **csrf(client))
    assert response.status_code == 200 and response.json()["max_trades_per_hour"] == 7
    bad = client.patch("/control/limits", {"max_trades_per_hour": -1}, content_type="application/json", **csrf(client))
    assert bad.status_code == 400
    assert client.post("/control/symbols/BTC/pause", content_type="application/json", **csrf(client)).json()["paused"]
    assert SymbolPause.objects.filter(symbol="BTC").exists() and state.paused_symbols() == {"BTC"}
    assert client.post("/control/symbols/NOPE/pause", content_type="application/json", **csrf(client)).status_code == 404
    assert client.post("/control/symbols/BTC/explode", content_type="application/json", **csrf(client)).status_code == 400
    client.post("/control/symbols/BTC/resume", content_type="application/json", **csrf(client))
    assert state.paused_symbols() == set()


def test_paused_symbol_is_not_traded(state, market):
    from liveguard.services import pause_symbol

    market("BTC", **JUMP)
    pause_symbol(state, "BTC")
    assert engine.evaluate_symbol("BTC", state=state) == "rejected:paused"


def test_no_response_ever_contains_a_secret(settings, staff, traded, state):
    secrets = {"UPBIT_API_KEY": "upbit-access-AAAAAAAAAAAAAAAAAAAA", "UPBIT_SECRET_KEY": "upbit-secret-BBBBBBBBBBBBBBBBBBBB",
               "BINANCE_API_KEY": "binance-key-CCCCCCCCCCCCCCCCCCCC", "BINANCE_SECRET_KEY": "binance-secret-DDDDDDDDDDDDDDDD"}
    for name, value in secrets.items():
        setattr(settings, name, value)
    client, _ = staff
    state.set_metrics(MetricsRecord(D("1"), D("1"), 1, 2, D("0"), D("0"), 1))
    paths = ["/health", "/metrics/live", "/positions", "/positions/BTC", "/signals", "/signals?history=1", "/orders",
             "/executions", "/premiums", "/control/kill-switch", "/control/limits", "/api/schema/", "/", "/board", "/activity"]
    for path in paths:
        body = client.get(path).content.decode()
        for value in secrets.values():
            assert value not in body, f"{path} leaks a secret"


def test_openapi_schema_validates_and_docs_are_served(client, tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = orjson.loads(schema.content)["paths"]
    assert {"/health", "/metrics/live", "/positions", "/positions/{symbol}", "/signals", "/signals/{symbol}", "/orders",
            "/orders/{order_id}", "/executions"} <= set(paths)
    assert client.get("/api/docs/").status_code == 200


def test_pages_render(client, admin_client):
    for path in ("/", "/board", "/activity"):
        assert client.get(path).status_code == 200
    assert b"kill_button" not in client.get("/").content  # anonymous: no button
    assert b"kill_button" in admin_client.get("/").content


def test_pnl_and_equity_history_follow_the_accounting_model(client, traded, state):
    from trading import accounting
    from trading.models import EquitySnapshot

    body = client.get("/pnl").json()
    assert {"equity", "flows", "realized", "unrealized", "fees_realized", "unpriced", "today", "total", "timestamp"} <= set(body)
    for period in ("today", "total"):
        p = {k: D(v) for k, v in body[period].items() if k != "since" and v is not None}
        assert p["pnl"] == p["trading"] + p["fx"] + p["inventory"]
        assert p["trading"] == p["spread_captured"] + p["slippage"] + p["hedges"] + p["fees"]
    assert D(body["equity"]) == D(body["flows"]) + D(body["realized"]) + D(body["unrealized"])
    assert D(body["total"]["trading"]) == traded.net_pnl
    [row] = client.get("/pnl/pairs").json()
    assert D(row["net_pnl"]) == traded.net_pnl == sum(D(row[k]) for k in ("spread_captured", "slippage", "hedges", "fees"))
    marks = accounting.current_marks(state, D("1400"), [("upbit", "BTC"), ("binance", "BTC")])
    accounting.snapshot(marks)
    [point] = client.get("/equity/history").json()
    assert D(point["pnl"]) == D(point["equity"]) - D(point["flows"]) and EquitySnapshot.objects.count() == 1
