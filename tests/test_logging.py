"""Logs a person can read: JSON lines carry the coin and the pair, and a worker at INFO writes no
per-task `received` / `succeeded` lines (failures still)."""

import io
import json
import logging
import logging.config
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from arbproject.celery import app as celery_app
from arbproject.logs import log_context, logging_config
from tests.conftest import wait_for
from tests.support import database_url, stop_processes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def json_lines():
    """Configure LOG_FORMAT=json into a buffer; yield a reader of its lines; restore the settings' logging."""
    config = logging_config(level="INFO", fmt="json")
    buffer = io.StringIO()
    config["handlers"]["console"]["stream"] = buffer
    logging.config.dictConfig(config)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    finally:
        logging.config.dictConfig(settings.LOGGING)


def test_json_lines_carry_coin_and_pair_id_inside_a_log_context(json_lines):
    log = logging.getLogger("trading.execution")
    log.info("outside")
    with log_context(coin="BTC", pair_id=42):
        log.info("pair %s sent", 42)
        with log_context(pair_id=43):
            log.warning("nested")
    log.info("after")
    outside, sent, nested, after = json_lines()
    assert sent == {**sent, "message": "pair 42 sent", "coin": "BTC", "pair_id": 42, "level": "INFO",
                    "logger": "trading.execution"}
    assert nested["coin"] == "BTC" and nested["pair_id"] == 43
    assert outside["coin"] is None and outside["pair_id"] is None
    assert after["coin"] is None and after["pair_id"] is None


def test_json_lines_still_mask_secrets(json_lines):
    logging.getLogger("trading.exchanges").error("GET /api/v3/order?symbol=BTCUSDT&timestamp=1&signature=abcdef failed")
    [line] = json_lines()
    assert "abcdef" not in line["message"] and "[redacted]" in line["message"]


@pytest.mark.django_db
def test_a_pair_writes_one_info_line_when_sent_and_one_when_closed_each_tagged_with_it(json_lines, state):
    from decimal import Decimal as D

    from tests.trading.test_fees import paper_pair
    from trading.signals import Fees

    pair = paper_pair(state, Fees(upbit=D("0.0005"), binance=D("0.001")))
    lines = [r for r in json_lines() if r["logger"] == "trading.execution" and r["level"] == "INFO"]
    assert [r["message"].split(":")[0] for r in lines] == [f"pair {pair.id} sent", f"pair {pair.id} filled"]
    assert all(r["coin"] == "BTC" and r["pair_id"] == str(pair.id) for r in lines)


def test_text_lines_name_the_coin_and_pair_when_known():
    config = logging_config(level="INFO", fmt="text")
    buffer = io.StringIO()
    config["handlers"]["console"]["stream"] = buffer
    logging.config.dictConfig(config)
    try:
        with log_context(coin="ETH", pair_id=7):
            logging.getLogger("trading.execution").info("pair 7 filled")
        logging.getLogger("trading.execution").info("no context")
    finally:
        logging.config.dictConfig(settings.LOGGING)
    inside, outside = buffer.getvalue().splitlines()
    assert inside.endswith("INFO trading.execution coin=ETH pair=7 pair 7 filled")
    assert outside.endswith("INFO trading.execution no context")


def test_an_unknown_log_format_is_refused():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="LOG_FORMAT"):
        logging_config(fmt="xml")


@pytest.mark.django_db(transaction=True)
def test_a_worker_at_info_writes_no_per_task_lines_but_still_its_failures(redis_url, tmp_path):
    log_file = tmp_path / "worker.log"
    env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": database_url(), "LOG_FORMAT": "json"}
    with log_file.open("w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "celery"), "-A", "arbproject", "worker", "-P", "solo", "-l", "info",
             "--without-mingle", "--without-gossip", "--without-heartbeat", "-n", f"logs-{os.getpid()}@%h"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: len(celery_app.control.ping(timeout=0.5)) >= 1, timeout=30, interval=0.2)
        for _ in range(3):
            celery_app.send_task("trading.tasks.evaluate_changed")
        celery_app.send_task("trading.tasks.evaluate_changed", args=["BTC"])  # a failure: it takes no argument
        wait_for(lambda: "raised unexpected" in log_file.read_text(), timeout=30, interval=0.2)
        time.sleep(0.2)
    finally:
        stop_processes([proc])
    text = log_file.read_text()
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert not [r for r in records if "received" in r["message"] or "succeeded" in r["message"]], text
    [failure] = [r for r in records if "raised unexpected" in r["message"]]
    assert failure["level"] == "ERROR" and "evaluate_changed" in failure["message"]
    assert any(r["logger"].startswith("celery") and r["level"] == "INFO" for r in records)  # INFO is on


@pytest.mark.django_db(transaction=True)
def test_beat_at_info_writes_no_line_per_task_it_sends(redis_url, tmp_path, redis_client):
    log_file = tmp_path / "beat.log"
    env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": database_url()}
    with log_file.open("w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "celery"), "-A", "arbproject", "beat", "-l", "info",
             "-s", str(tmp_path / "schedule")],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        # publish_metrics is due every second: a few of them have been sent once the queue holds them.
        wait_for(lambda: redis_client.llen("celery") >= 3, timeout=30, interval=0.2)
    finally:
        stop_processes([proc])
    assert "Sending due task" not in log_file.read_text()
