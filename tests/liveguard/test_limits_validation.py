"""Issue 11 §1: absurd or negative limits are refused by the model, the admin and the API (400 JSON)."""

from decimal import Decimal as D

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client

from liveguard.models import AuditLog, GuardLimits
from liveguard.services import update_limits

pytestmark = pytest.mark.django_db

ABSURD = [
    {"min_spread_pct": D("-1")},
    {"max_daily_loss": D("-1")},
    {"stop_loss_pct": D("-5")},
    {"circuit_breaker_threshold_pct": D("0")},
    {"max_inventory_pct": D("500")},
    {"max_trades_per_hour": 10**12},
    {"max_trades_per_hour": 50, "max_trades_per_day": 10},
    {"max_daily_loss": D("3000000")},  # above max_total_loss
    {"take_profit_pct": D("50"), "stop_loss_pct": D("0.5")},
    {"max_position_size": D("0")},
]


@pytest.mark.parametrize("changes", ABSURD)
def test_model_refuses_absurd_limits(state, changes):
    with pytest.raises(ValidationError):
        update_limits(state, **changes)
    assert GuardLimits.load().min_spread_pct == D("0.3")


def test_sane_limits_still_save_and_are_audited(state):
    update_limits(state, min_spread_pct=D("0.5"), max_trades_per_hour=0)
    limits = GuardLimits.load()
    assert limits.min_spread_pct == D("0.5") and limits.max_trades_per_hour == 0
    assert AuditLog.objects.filter(model="GuardLimits", field="min_spread_pct").exists()


def superuser_client():
    user = User.objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(user)
    return client


def jsonable(changes):
    return {k: str(v) if isinstance(v, D) else v for k, v in changes.items()}


@pytest.mark.parametrize("changes", ABSURD)
def test_api_answers_400_json_with_field_errors(state, changes):
    client = superuser_client()
    response = client.patch("/control/limits", jsonable(changes), content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["fields"]
    assert not AuditLog.objects.filter(model="GuardLimits").exists()


def test_admin_refuses_absurd_limits(state):
    client = superuser_client()
    GuardLimits.load()
    form = {f.name: getattr(GuardLimits.load(), f.name) for f in GuardLimits._meta.concrete_fields
            if f.name not in {"id", "updated_at"}}
    form["min_spread_pct"] = "-1"
    form["block_market_warnings"] = "on"
    response = client.post("/admin/liveguard/guardlimits/1/change/", form)
    assert response.status_code == 200  # the form again, with its errors
    assert GuardLimits.load().min_spread_pct == D("0.3")
    form["min_spread_pct"] = "0.4"
    response = client.post("/admin/liveguard/guardlimits/1/change/", form)
    assert response.status_code == 302
    assert GuardLimits.load().min_spread_pct == D("0.4")
    assert AuditLog.objects.filter(model="GuardLimits", field="min_spread_pct").exists()
