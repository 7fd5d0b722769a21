"""The outer process: the scratch database, the ports and the live-mode environment of the inner one."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from django.core.management.base import CommandError

from .common import (
    DEFAULT_SERVER,
    LIVE_CONFIRM,
    PY,
    ROOT,
    raise_interrupt,
    say,
)


class ScratchDatabase:
    """kimp_chaos_<random> on a PostgreSQL server, or a SQLite file in a temporary directory."""

    def __init__(self, server: str | None):
        self.name = f"kimp_chaos_{secrets.token_hex(4)}"
        self.url = ""
        self.server = ""
        self.tmpdir = ""
        wanted = server or DEFAULT_SERVER
        if not wanted.startswith("sqlite") and self._answers(wanted):
            self.server = wanted
        elif server and not server.startswith("sqlite"):
            raise CommandError(f"no PostgreSQL answers at {_hide_password(server)}")

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            import psycopg

            with psycopg.connect(_with_db(url, "postgres"), connect_timeout=3):
                return True
        except Exception:  # noqa: BLE001 — anything: fall back to SQLite
            return False

    def create(self) -> str:
        if self.server:
            import psycopg
            from psycopg import sql

            with psycopg.connect(_with_db(self.server, "postgres"), autocommit=True, connect_timeout=10) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
            self.url = _with_db(self.server, self.name)
        else:
            self.tmpdir = tempfile.mkdtemp(prefix="kimp-chaos-db-")
            self.url = f"sqlite:///{self.tmpdir}/{self.name}.sqlite3"
        return self.url

    def describe(self) -> str:
        return f"PostgreSQL {self.name} on {_hide_password(self.server)}" if self.server else f"SQLite {self.url[10:]}"

    def drop(self) -> None:
        if self.server and self.url:
            import psycopg
            from psycopg import sql

            with psycopg.connect(_with_db(self.server, "postgres"), autocommit=True, connect_timeout=10) as conn:
                force = sql.SQL(" WITH (FORCE)") if conn.info.server_version >= 130000 else sql.SQL("")
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(self.name), force))
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return url


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def outer(options, out) -> int:
    db = ScratchDatabase(options["database_url"])
    logdir = Path(tempfile.mkdtemp(prefix="kimp-chaos-"))
    redis_port, upbit_port, binance_port = free_port(), free_port(), free_port()
    while len({redis_port, upbit_port, binance_port}) < 3:
        upbit_port, binance_port = free_port(), free_port()
    key, secret = f"chaos-{secrets.token_hex(6)}", secrets.token_hex(32)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    host = "127.0.0.1"
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_TEST_NAME", "KIMP_TEST_DB_ENGINE", "CELERY_TASK_ALWAYS_EAGER", "FEED_SYMBOLS")}
    env.update(
        DJANGO_SETTINGS_MODULE="arbproject.settings", PYTHONUNBUFFERED="1",
        REDIS_URL=redis_url, CELERY_BROKER_URL=redis_url, CELERY_RESULT_BACKEND=redis_url, CHANNELS_REDIS_URL=redis_url,
        LIVE_MODE="true", LIVE_MODE_CONFIRM=LIVE_CONFIRM, DJANGO_SECRET_KEY=secrets.token_urlsafe(48),
        API_READ_TOKEN=secrets.token_urlsafe(24), DJANGO_DEBUG="false",  # live mode keeps reads private
        UPBIT_API_KEY=key, UPBIT_SECRET_KEY=secret, BINANCE_API_KEY=key, BINANCE_SECRET_KEY=secret,
        VENUE_HOST=host, VENUE_UPBIT_PORT=str(upbit_port), VENUE_BINANCE_PORT=str(binance_port),
        UPBIT_REST_URL=f"http://{host}:{upbit_port}", UPBIT_WS_URL=f"ws://{host}:{upbit_port}/websocket/v1",
        BINANCE_REST_URL=f"http://{host}:{binance_port}", BINANCE_WS_URL=f"ws://{host}:{binance_port}",
        FX_REFERENCE_URL=f"http://{host}:{upbit_port}/v1/forex/recent?codes=FRX.KRWUSD", FX_SOURCE="upbit",
        # Every signed call gives up after 2 s (the faults' delays and holds straddle it); a pair's
        # lease is 30 s, refreshed at each stage (a stage takes at most ~15 s: a 2 s timeout plus the
        # 8 s look-up budget plus back-offs), so that resume takes over a dead worker's pair in the run.
        # The quant cap (RISK_BUDGET_KRW over the premium's volatility) would shrink pairs to dust once
        # beat refits it; the soak sizes pairs by the limits above instead.
        RISK_BUDGET_KRW="1000000000",
        EXCHANGE_TIMEOUT_S="2", PAIR_LEASE_S="30", LEG_RISK_AFTER_S="60", LEG_SLIPPAGE="0.003",
        FEED_RECONNECT_MAX_BACKOFF="1", LOG_LEVEL=os.environ.get("CHAOS_LOG_LEVEL", "WARNING"),
        CHAOS_REDIS_PORT=str(redis_port), CHAOS_API_KEY=key, CHAOS_API_SECRET=secret,
    )
    argv = [PY, str(ROOT / "manage.py"), "chaos", "--inner", "--seconds", str(options["seconds"]), "--seed",
            str(options["seed"]), "--coins", str(options["coins"]), "--workers", str(options["workers"]),
            "--logdir", str(logdir)]
    code = 1
    proc = None
    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    try:
        env["DATABASE_URL"] = db.create()
        say(out, f"chaos: seed {options['seed']}; scratch database {db.describe()}; logs in {logdir}")
        proc = subprocess.Popen(argv, cwd=ROOT, env=env)
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:
                # Ctrl-C reaches the inner process too (same process group); a SIGTERM to us alone is passed on.
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
                code = 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(180)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if options["keep"]:
            say(out, f"chaos: kept the scratch database ({db.describe()}) and the logs in {logdir}")
        else:
            try:
                db.drop()
            except Exception as exc:  # noqa: BLE001 — reported, not hidden
                say(out, f"chaos: could not drop the scratch database {db.name}: {exc}")
            if code == 0:
                shutil.rmtree(logdir, ignore_errors=True)
            else:
                say(out, f"chaos: logs of the failed run kept in {logdir}")
    return code
