#!/usr/bin/env python
"""Run the whole system against the simulated venue. Ctrl-C stops every process this started.

Processes: redis-server (only when none answers at REDIS_URL), the venue, one feed worker per
exchange, the signal dispatcher, a Celery worker, Celery beat, the WebSocket relay, and the ASGI
server (uvicorn) on :8001. A staff login for the dashboard's kill switch: `manage.py createsuperuser`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from marketdata.realtime import set_process_realtime  # noqa: E402  (stdlib only: no Django set-up)

RUN = ROOT / ".run"
METRICS_DIR = RUN / "prometheus"
PY = sys.executable
BIN = Path(PY).parent


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


# CPU priorities (docs/architecture.md): what can wait a few milliseconds runs at HOUSEKEEPING_NICE;
# the hot path of a tick (Redis, the feeds, the evaluate worker) at TRADING_NICE where the OS allows a
# negative niceness (root, or CAP_SYS_NICE), else at 0; everything else at 0.
HOUSEKEEPING_NICE = 10
TRADING_NICE = -10
# ... and on top of that, real-time priority (SCHED_FIFO) where allowed: the feeds, the dispatcher and
# the evaluate workers promote their hot threads themselves, each on a CPU budget (REALTIME_PRIORITY,
# marketdata/realtime.py); Redis is promoted by its starter. Threads of one real-time priority never
# preempt each other, so the stages of a tick are ranked downstream first: a woken evaluate worker
# takes the core from a feed in the middle of a burst (the changes it finishes are already waiting),
# and Redis, which every hop waits on and whose commands are short, serves a request the moment it
# arrives.
REALTIME_PRIORITY = 10  # the feeds
EVALUATE_REALTIME_PRIORITY = REALTIME_PRIORITY + 5  # the evaluate workers and the dispatcher
REDIS_REALTIME_PRIORITY = REALTIME_PRIORITY + 10
FEED_ENV = {"REALTIME_PRIORITY": str(REALTIME_PRIORITY)}
EVALUATE_ENV = {"REALTIME_PRIORITY": str(EVALUATE_REALTIME_PRIORITY)}


def set_priority(nice: int, realtime: int = 0) -> None:
    """Run this process at `nice` (in a child, before exec): a negative value the OS refuses leaves it
    at 0. A process that leads its own session is also its own autogroup (Linux's
    sched_autogroup_enabled), and between autogroups the scheduler weighs the groups' niceness, not
    the processes': so the group's is set too, or the niceness would only rank it among its children.
    realtime: also at this SCHED_FIFO priority where the OS allows it (for Redis only: a Python process
    of the hot path promotes its own thread, on a budget)."""
    try:
        os.nice(nice)
    except PermissionError:
        pass  # stay at 0
    if realtime:
        set_process_realtime(0, realtime)  # where not allowed, the niceness alone
    if os.getsid(0) == os.getpid():
        try:
            with open("/proc/self/autogroup", "w") as autogroup:
                autogroup.write(str(os.getpriority(os.PRIO_PROCESS, 0)))
        except OSError:
            pass  # no autogroups here (or not allowed): the niceness alone decides


class Supervisor:
    def __init__(self, env: dict):
        self.env = env
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.stopping = False

    def start(self, name: str, argv: list[str], *, nice: int = 0, realtime: int = 0, env: dict | None = None) -> None:
        """nice, realtime: the CPU priority (set_priority; docs/architecture.md: housekeeping yields to
        the trading path)."""
        print(f"demo: starting {name}: {' '.join(argv)}", flush=True)
        proc = subprocess.Popen(argv, cwd=ROOT, env={**self.env, **(env or {})}, start_new_session=True,
                                preexec_fn=(lambda: set_priority(nice, realtime)) if nice or realtime else None)
        self.procs.append((name, proc))

    def stop(self, *_args) -> None:
        if self.stopping:
            return
        self.stopping = True
        print("\ndemo: stopping every process", flush=True)
        # Only the main process of each: Celery's and daphne's own shutdown stops their children.
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for name, proc in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"demo: {name} ignored SIGTERM; killing it", flush=True)
                os.killpg(proc.pid, signal.SIGKILL)

    def watch(self) -> int:
        while not self.stopping:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    print(f"demo: {name} exited with {proc.returncode}; stopping the rest", flush=True)
                    self.stop()
                    return 1
            time.sleep(0.5)
        return 0


def reset_metrics_dir() -> None:
    """Empty the metrics directory before any process starts: counters of a run that ended are files
    there, and /metrics would add them to this run's."""
    shutil.rmtree(METRICS_DIR, ignore_errors=True)
    METRICS_DIR.mkdir(parents=True)


def ensure_staff_login(env: dict) -> None:
    """The kill switch needs a staff user: create `admin` once, with a random password shown here."""
    password = env.get("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    code = (
        "from django.contrib.auth.models import User\n"
        "if not User.objects.filter(is_staff=True).exists():\n"
        f"    User.objects.create_superuser('admin', password={password!r})\n"
        "    print('created')\n"
    )
    out = subprocess.run([PY, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    if "created" in out.stdout:
        print(f"demo: staff login for the kill switch: admin / {password}  (http://localhost:8001/admin/)", flush=True)


def main() -> int:
    RUN.mkdir(exist_ok=True)
    env = os.environ.copy()
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    env.setdefault("DJANGO_SETTINGS_MODULE", "arbproject.settings")
    host = env.setdefault("VENUE_HOST", "127.0.0.1")
    upbit_port = env.setdefault("VENUE_UPBIT_PORT", "8701")
    binance_port = env.setdefault("VENUE_BINANCE_PORT", "8702")
    # The demo always trades against the simulated venue, whatever .env says.
    env.update(
        UPBIT_REST_URL=f"http://{host}:{upbit_port}",
        UPBIT_WS_URL=f"ws://{host}:{upbit_port}/websocket/v1",
        BINANCE_REST_URL=f"http://{host}:{binance_port}",
        BINANCE_WS_URL=f"ws://{host}:{binance_port}",
        FX_REFERENCE_URL=f"http://{host}:{upbit_port}/v1/forex/recent?codes=FRX.KRWUSD",
        LIVE_MODE="false",
        # Every process writes its counters here and /metrics adds them up (trading/telemetry.py).
        PROMETHEUS_MULTIPROC_DIR=str(METRICS_DIR),
    )
    reset_metrics_dir()
    sup = Supervisor(env)
    signal.signal(signal.SIGINT, sup.stop)
    signal.signal(signal.SIGTERM, sup.stop)

    if not redis_answers(env["REDIS_URL"]):
        port = urlparse(env["REDIS_URL"]).port or 6379
        binary = shutil.which("redis-server")
        if binary is None:
            print("demo: no Redis answers and redis-server is missing (make installs it)", file=sys.stderr)
            return 1
        sup.start("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                            "--dir", str(RUN)], nice=TRADING_NICE, realtime=REDIS_REALTIME_PRIORITY)
        for _ in range(50):
            if redis_answers(env["REDIS_URL"]):
                break
            time.sleep(0.1)

    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    ensure_staff_login(env)
    # A tick's hot path (Redis, feeds, evaluate) runs at TRADING_NICE and real-time priority where
    # allowed (FEED_ENV, EVALUATE_ENV: the feeds, the dispatcher and the evaluate workers promote their own
    # threads); the dispatcher and
    # the pairs at normal priority; what can wait a few milliseconds (housekeeping, notifications, the
    # dashboard, and the simulated exchange, which stands for machines of its own) at HOUSEKEEPING_NICE.
    sup.start("venue", [PY, "manage.py", "run_venue"], nice=HOUSEKEEPING_NICE)
    sup.start("feed-upbit", [PY, "-m", "marketdata.feeds", "--exchange", "upbit"], nice=TRADING_NICE, env=FEED_ENV)
    sup.start("feed-binance", [PY, "-m", "marketdata.feeds", "--exchange", "binance"], nice=TRADING_NICE, env=FEED_ENV)
    sup.start("signals", [PY, "manage.py", "run_signals"], env=EVALUATE_ENV)  # a batch behind hands over through it
    # One worker per queue (arbproject/celery.py): evaluations never wait behind a pair or an alert,
    # nor pairs behind beat's housekeeping.
    celery = [str(BIN / "celery"), "-A", "arbproject", "worker", "-l", "info"]
    # Two evaluate workers, one a core: while one waits on Redis or is behind, the other takes the next batch.
    for node in ("evaluate", "evaluate2"):
        sup.start(f"worker-{node}", [*celery, "-Q", "evaluate", "-P", "solo", "-n", f"{node}@%h"], nice=TRADING_NICE,
                  env={"CELERY_ACK_EMULATION": "false", **EVALUATE_ENV})  # a batch's message is disposable (docs/configuration.md)
    sup.start("worker-pairs", [*celery, "-Q", "pairs", "-c", "2", "-n", "pairs@%h"])
    sup.start("worker-ops", [*celery, "-Q", "celery,notify", "-c", "2", "-n", "ops@%h"], nice=HOUSEKEEPING_NICE)
    sup.start("beat", [str(BIN / "celery"), "-A", "arbproject", "beat", "-l", "info", "-s", str(RUN / "celerybeat-schedule")],
              nice=HOUSEKEEPING_NICE)
    sup.start("relay", [PY, "manage.py", "run_relay"], nice=HOUSEKEEPING_NICE)
    # uvicorn (uvloop + httptools) serves HTTP and the Channels WebSockets.
    sup.start("web", [str(BIN / "uvicorn"), "arbproject.asgi:application", "--host", "127.0.0.1", "--port", "8001",
                      "--lifespan", "off", "--no-access-log"], nice=HOUSEKEEPING_NICE)
    print("demo: http://localhost:8001  (Ctrl-C stops everything)", flush=True)
    return sup.watch()


if __name__ == "__main__":
    sys.exit(main())
