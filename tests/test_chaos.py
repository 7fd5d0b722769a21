"""The chaos soak, short: `manage.py chaos --seconds 60` runs the whole system in live mode against the
venue (two Celery workers, beat, feeds, dispatcher, a private Redis) under random faults, kills a worker
and restarts Redis, then stops trading, resumes, reconciles and checks the money invariant against the
venue's own orders and accounts. Its scratch database goes on the server this run uses."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.support import database_url

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
CLOSING = re.compile(r"^chaos: pairs=(\d+) faults=(\d+) kills=(\d+) redis_restarts=(\d+) "
                     r"unflagged_exposure=(\d+) doubled_orders=(\d+) ledger_matches_venue=(yes|no)$", re.MULTILINE)


@pytest.mark.timeout(900)
def test_a_60_second_chaos_soak_keeps_every_order_booked_once_and_the_ledger_equal_to_the_venue():
    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        server = database_url(name="postgres")  # the command creates kimp_chaos_<random> there and drops it
    else:
        server = "sqlite://"
    run = subprocess.run([sys.executable, "manage.py", "chaos", "--seconds", "60", "--database-url", server],
                         cwd=ROOT, capture_output=True, text=True, timeout=720)
    output = run.stdout + run.stderr
    found = CLOSING.findall(run.stdout)
    assert found, f"no closing line; exit {run.returncode}:\n{output[-6000:]}"
    pairs, faults, kills, restarts, exposure, doubled, matches = found[-1]
    assert (exposure, doubled, matches) == ("0", "0", "yes"), output[-6000:]
    assert run.returncode == 0, output[-6000:]
    assert int(pairs) > 0 and int(faults) > 0, output[-6000:]
    assert int(kills) > 0 and int(restarts) > 0, output[-6000:]
