"""Market data sits below the trading core: nothing under marketdata/ imports trading, and a feed
worker does not load the statistics stack (numpy/scipy cost it tens of MB)."""

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_nothing_under_marketdata_imports_trading():
    offenders = {str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if m.split(".")[0] == "trading")
                 for path in (ROOT / "marketdata").rglob("*.py")}
    assert {path: modules for path, modules in offenders.items() if modules} == {}


def printed_by_a_fresh_process(code: str) -> str:
    """What `code` prints, run by a new interpreter with the project's settings (a clean sys.modules)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "arbproject.settings"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


def test_a_feed_worker_does_not_load_numpy_or_scipy():
    assert printed_by_a_fresh_process(
        "import django, sys; django.setup(); import marketdata.management.commands.run_feeds; "
        "print(sorted(m for m in ('numpy', 'scipy', 'twisted') if m in sys.modules))") == "[]"


def test_the_lean_feed_process_loads_neither_django_apps_nor_celery_nor_the_trading_core():
    """`python -m marketdata.feeds` reads settings without Django's setup: a feed keeps books, nothing else."""
    code = ("import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'arbproject.settings'); "
            "import marketdata.feeds.run; from django.conf import settings; settings.REDIS_URL; "
            "from django.apps import apps; "
            "print(apps.ready, sorted({m.split('.')[0] for m in sys.modules} & "
            "{'celery', 'kombu', 'trading', 'liveguard', 'dashboard', 'rest_framework', 'channels', 'numpy', 'scipy'}))")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "arbproject.settings"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False []"
    usage = subprocess.run([sys.executable, "-m", "marketdata.feeds", "--help"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=60, check=True)
    assert "--exchange" in usage.stdout


def test_a_trading_process_does_not_load_the_notification_library():
    """apprise costs every process that imports it ~19 MB: only the sender and the admin's form load it."""
    assert printed_by_a_fresh_process(
        "import django, sys; django.setup(); import arbproject.celery, trading.tasks, liveguard.admin, liveguard.notify; "
        "print('apprise' in sys.modules)") == "False"
