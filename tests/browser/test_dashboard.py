"""The dashboard in real headless Chromium (Debian's, driven by Playwright) against the running
system: venue, feeds, dispatcher, Celery worker and beat, relay and uvicorn, each its own process.
Screenshots land in artifacts/."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.contrib.auth.models import User

from liveguard.models import GuardEvent, KillSwitch
from tests.conftest import wait_for
from tests.support import database_url, free_port, stop_processes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)"),
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"


@pytest.fixture
def system(redis_url):
    up, bn, web = free_port(), free_port(), free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": database_url(),
           "UPBIT_REST_URL": f"http://127.0.0.1:{up}", "UPBIT_WS_URL": f"ws://127.0.0.1:{up}/websocket/v1",
           "BINANCE_REST_URL": f"http://127.0.0.1:{bn}", "BINANCE_WS_URL": f"ws://127.0.0.1:{bn}", "LOG_LEVEL": "WARNING",
           "FX_REFERENCE_URL": f"http://127.0.0.1:{up}/v1/forex/recent?codes=FRX.KRWUSD"}
    bin_dir = Path(sys.executable).parent
    manage = [sys.executable, "manage.py"]
    commands = [
        manage + ["run_venue", "--upbit-port", str(up), "--binance-port", str(bn), "--seed", "5"],
        manage + ["run_feeds", "--exchange", "upbit"],
        manage + ["run_feeds", "--exchange", "binance"],
        manage + ["run_signals"],
        manage + ["run_relay"],
        [str(bin_dir / "celery"), "-A", "arbproject", "worker", "-P", "solo", "-l", "warning", "--without-mingle",
         "--without-gossip", "--without-heartbeat", "-n", f"browser-{os.getpid()}@%h"],
        [str(bin_dir / "celery"), "-A", "arbproject", "beat", "-l", "warning", "-s", str(ROOT / ".run" / f"beat-{os.getpid()}")],
        [str(bin_dir / "uvicorn"), "arbproject.asgi:application", "--port", str(web), "--lifespan", "off", "--log-level", "warning"],
    ]
    procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in commands]
    base = f"http://127.0.0.1:{web}"
    try:
        wait_for(lambda: _health_ok(base), timeout=60, interval=0.5)
        yield {"base": base, "venue": f"http://127.0.0.1:{bn}"}
    finally:
        stop_processes(procs)


def _health_ok(base):
    try:
        return requests.get(f"{base}/health", timeout=1).status_code == 200
    except requests.RequestException:  # not up yet, or busy starting
        return False


@pytest.fixture
def browser(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls here are still plain
    # synchronous calls, so Django's async-safety guard would be a false alarm.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield instance
        instance.close()


def test_overview_shows_live_numbers_that_change(system, browser):
    page = browser.new_page(bypass_csp=True)  # the test's own string predicates are eval; the page's CSP is tested in test_deploy_security
    page.goto(system["base"] + "/")
    page.wait_for_function("document.getElementById('equity').textContent !== '–'", timeout=20000)
    page.wait_for_function("document.getElementById('conn').textContent === 'live'", timeout=10000)
    first = page.inner_text("#equity")
    # Prices move every step, so the valuation moves within a few metric pushes.
    page.wait_for_function(f"document.getElementById('equity').textContent !== {first!r}", timeout=20000)
    # The day's PnL is decomposed on the page, per the accounting model.
    page.wait_for_function("document.querySelectorAll('#decomposition tbody tr').length >= 8", timeout=20000)
    assert "spread captured" in page.inner_text("#decomposition")
    assert page.inner_text("#kill_state").startswith("released")
    assert "feed_upbit" in page.inner_text("#health")
    page.screenshot(path=str(ARTIFACTS / "overview.png"), full_page=True)


def test_premium_board_lists_the_venues_coins(system, browser):
    page = browser.new_page(bypass_csp=True)
    page.goto(system["base"] + "/board")
    page.wait_for_function("document.querySelectorAll('#board tbody tr').length >= 10", timeout=20000)
    coins = page.eval_on_selector_all("#board tbody tr", "rows => rows.map(r => r.dataset.symbol)")
    assert {"BTC", "ETH", "XRP", "SOL", "DOGE", "ADA", "TRX", "LINK", "AVAX", "DOT"} <= set(coins)
    page.click("th[data-key='symbol']")  # sort by coin
    page.wait_for_timeout(1500)
    ordered = page.eval_on_selector_all("#board tbody tr", "rows => rows.map(r => r.dataset.symbol)")
    assert ordered in (sorted(ordered), sorted(ordered, reverse=True))
    page.screenshot(path=str(ARTIFACTS / "premium-board.png"), full_page=True)


def test_staff_kill_switch_stops_trading_and_every_page_shows_it(system, browser):
    User.objects.create_superuser("ops", password="ops-password-1")
    page = browser.new_page(bypass_csp=True)
    page.goto(system["base"] + "/admin/login/?next=/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "ops-password-1")
    page.click("input[type=submit]")
    page.wait_for_url(system["base"] + "/")
    other = browser.new_page(bypass_csp=True)  # an anonymous dashboard open elsewhere
    other.goto(system["base"] + "/board")
    page.wait_for_function("document.getElementById('kill_state').textContent === 'released'", timeout=20000)
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#kill_button")
    page.wait_for_function("document.getElementById('kill_state').textContent.startsWith('ENGAGED')", timeout=5000)
    other.wait_for_function("!document.getElementById('halt').hidden", timeout=5000)
    assert KillSwitch.load().engaged
    # A premium jump now is refused by the kill switch.
    requests.post(system["venue"] + "/_venue/control", json={"action": "premium", "symbol": "ETH", "premium": 0.03}, timeout=5)
    wait_for(lambda: GuardEvent.objects.filter(check_name="kill_switch", symbol="ETH").exists(), timeout=15)
    page.screenshot(path=str(ARTIFACTS / "kill-switch-engaged.png"), full_page=True)
    other.screenshot(path=str(ARTIFACTS / "other-dashboard-halted.png"), full_page=True)
