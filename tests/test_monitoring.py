"""infra/prometheus and infra/grafana (issue 13): Prometheus' own validator accepts the config and the
alert rules and runs their unit tests; the Grafana dashboard is checked for structure; and every metric
either of them names exists in a live /metrics exposition.

promtool comes from Debian's prometheus package (`make test` installs it with
infra/scripts/ensure_promtool.sh); without it those checks are skipped. Grafana's server is in no
registry this project installs from (not Debian, PyPI or npm), so the dashboard is not loaded into
Grafana here: its JSON is checked against what Grafana's file provisioning needs instead.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest
import yaml
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from arbproject.celery import app as celery_app
from trading import telemetry
from trading.state import FeedStats, MetricsRecord

INFRA = Path(__file__).resolve().parents[1] / "infra"
PROMETHEUS = INFRA / "prometheus"
DASHBOARD = INFRA / "grafana" / "dashboards" / "kimp.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (make test installs Debian's "
                                                               "prometheus package with infra/scripts/ensure_promtool.sh)")
METRIC = re.compile(r"\bkimp_[a-z0-9_]+")


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess:
    result = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@needs_promtool
def test_alert_rules_pass_promtool_check():
    assert "SUCCESS" in promtool("check", "rules", "alerts.yml").stdout


@needs_promtool
def test_alert_rules_pass_their_unit_tests():
    promtool("test", "rules", "alerts_test.yml")


@needs_promtool
def test_prometheus_config_passes_promtool_check(tmp_path):
    """Checked in a copy beside an empty read_token: the operator writes the real one (never committed)."""
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(PROMETHEUS / name, tmp_path / name)
    (tmp_path / "read_token").write_text("")
    promtool("check", "config", "prometheus.yml", cwd=tmp_path)


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def alert_exprs() -> list[str]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def test_dashboard_is_what_grafana_file_provisioning_loads():
    dashboard = json.loads(DASHBOARD.read_text())
    datasource = yaml.safe_load((INFRA / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    provider = yaml.safe_load((INFRA / "grafana" / "provisioning" / "dashboards" / "kimp.yml").read_text())
    compose = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"] and all(t["expr"].strip() and t["refId"] for t in panel["targets"]), panel["title"]
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in mounts


def test_every_metric_in_the_alerts_and_the_dashboard_exists(state, market, db):
    """Names are taken from the PromQL of every rule and panel and looked up in a scrape of /metrics."""
    now = datetime.now(UTC)
    market("BTC")
    state.redis.zadd("arbitrage:index:premiums", {"BTC": 1})
    for venue in ("upbit", "binance"):
        state.write_market((), stats=FeedStats(venue, messages=1, connected=1))
    state.beat("worker", now)
    state.set_metrics(MetricsRecord(D("1"), D("1"), 0, 0, D("0"), D("0"), 0, equity=D("1")))
    state.set_exposure("BTC", 1)
    state.set_reconciliation({"ok": True, "differences": []})
    telemetry.observe_tick_to_signal(0.002)
    celery_app.tasks["celery.backend_cleanup"].apply()  # a task run, so that task latency has a series

    response = Client().get("/metrics")
    assert response.status_code == 200
    exposed = {sample.name for family in text_string_to_metric_families(response.content.decode())
               for sample in family.samples}
    used = {name for expr in alert_exprs() + dashboard_exprs() for name in METRIC.findall(expr)}
    assert len(used) >= 30
    assert not used - exposed, f"named in infra/ but not exposed: {sorted(used - exposed)}"
