import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from trading import engine
from .test_engine import JUMP
pytestmark = pytest.mark.django_db

def test_q(state, market):
    from tests.conftest import set_limits
    from decimal import Decimal
    set_limits(max_total_exposure=Decimal("100000000"), max_position_size=Decimal("2000000"), max_daily_loss=Decimal("50000000"), max_total_loss=Decimal("90000000"))
    market("BTC", **JUMP)
    assert engine.evaluate_symbol("BTC", state=state) == "executed"
    market("BTC", **JUMP)
    import liveguard.models as m
    set_limits(max_position_size=Decimal("4000000"))
    ctx = state.evaluation_context("BTC", engine.FX_KEY)
    seen = engine.look(state, "BTC", ctx)
    print("SEEN", seen and seen.max_notional, seen and seen.finder(state))
    with CaptureQueriesContext(connection) as c:
        r = engine.evaluate_symbol("BTC", state=state)
    print("RESULT", r, len(c.captured_queries))
    for q in c.captured_queries:
        print(q["sql"][:160])
