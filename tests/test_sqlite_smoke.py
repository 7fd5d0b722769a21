"""SQLite smoke run: `make demo` keeps SQLite as its embedded database, so `make test` runs these
again on SQLite (`-m sqlite_smoke`) after the whole suite has run on PostgreSQL."""

import os
import subprocess
import sys
from decimal import Decimal as D
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.conftest import balances_from_deposits_and_fills
from tests.support import database_url
from trading import engine, ledger
from trading.models import Balance, Fill, Order, Pair

ON_SQLITE = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
pytestmark = [
    pytest.mark.sqlite_smoke,
    pytest.mark.skipif(not ON_SQLITE, reason="the SQLite smoke run (make test runs it with DATABASE_URL=sqlite:///...)"),
]
ROOT = Path(__file__).resolve().parents[1]
# Upbit bids 3 % above Binance asks at 1,400 KRW/USDT: buy Binance, sell Upbit.
JUMP = dict(upbit_bids=(("143000000", "0.02"), ("142900000", "1")), upbit_asks=(("143100000", "1"),),
            binance_bids=(("99000", "1"),), binance_asks=(("99010", "0.005"), ("99020", "1")))


@pytest.fixture(autouse=True)
def _fresh_limits():
    engine.forget_limits()
    yield
    engine.forget_limits()


@pytest.mark.django_db
def test_every_migration_applies_and_the_database_runs_as_make_demo_sets_it_up():
    assert connection.vendor == "sqlite"
    executor = MigrationExecutor(connection)
    assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"  # readers beside the one writer: workers and web share the file


@pytest.mark.django_db
def test_a_paper_pair_books_its_fills_and_the_balances_add_up_exactly(state, market):
    market("BTC", **JUMP)
    assert engine.evaluate_symbol("BTC", state=state) == "executed"
    pair = Pair.objects.get()
    assert (pair.buy_exchange, pair.sell_exchange, pair.state) == ("binance", "upbit", "filled")
    assert pair.quantity == D("0.00721")  # 1,000,000 KRW position limit / (99,010 x 1,400), floored to 0.00001
    assert Order.objects.count() == 2 and Fill.objects.count() == 3
    actual = {(b.venue, b.asset): b.amount for b in Balance.objects.all()}
    assert actual == balances_from_deposits_and_fills()
    assert ledger.ledger_sums() == actual


@pytest.mark.django_db(transaction=True)
def test_a_process_the_tests_start_shares_the_test_database():
    User.objects.create(username="from-the-test")
    code = ("from django.contrib.auth.models import User; "
            "print(User.objects.filter(username='from-the-test').count()); "
            "User.objects.create(username='from-the-child')")
    env = {**os.environ, "DATABASE_URL": database_url(), "LOG_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, "manage.py", "shell", "--no-imports", "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"]
    assert User.objects.filter(username="from-the-child").exists()
