from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured

from arbproject.env import env_bool, env_decimal, env_int, env_list, env_str


def test_typed_helpers_read_values(monkeypatch):
    monkeypatch.setenv("K_BOOL", "yes")
    monkeypatch.setenv("K_INT", "42")
    monkeypatch.setenv("K_DEC", "0.0005")
    monkeypatch.setenv("K_LIST", "BTC, ETH,,XRP ")
    assert env_bool("K_BOOL", False) is True
    assert env_int("K_INT", 0) == 42
    assert env_decimal("K_DEC", "1") == Decimal("0.0005")
    assert env_list("K_LIST") == ["BTC", "ETH", "XRP"]
    assert env_str("K_MISSING", "fallback") == "fallback"


@pytest.mark.parametrize(
    "reader, value, message",
    [
        (lambda: env_bool("K", False), "maybe", "not a boolean"),
        (lambda: env_int("K", 1), "1.5", "not an integer"),
        (lambda: env_int("K", 1, minimum=5), "2", "at least 5"),
        (lambda: env_decimal("K", "1"), "1,5", "not a decimal"),
        (lambda: env_decimal("K", "1"), "NaN", "finite"),
    ],
)
def test_bad_values_fail_loudly(monkeypatch, reader, value, message):
    monkeypatch.setenv("K", value)
    with pytest.raises(ImproperlyConfigured, match=message):
        reader()


def test_required_string_without_default_fails(monkeypatch):
    monkeypatch.delenv("K_REQ", raising=False)
    with pytest.raises(ImproperlyConfigured, match="K_REQ is required"):
        env_str("K_REQ", required=True)
