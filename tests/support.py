"""Helpers shared by the tests and the benchmarks: free ports, a private redis-server, and the
DATABASE_URL that points the processes a test starts at the test database."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from urllib.parse import quote, urlencode

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server of our own on a free port, keeping nothing on disk."""

    def __init__(self, port: int | None = None):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; `make test` installs it (apt-get install redis-server)")
        self.port = port or free_port()
        self.workdir = tempfile.mkdtemp(prefix="kimp-redis-")
        self.argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                     "--dir", self.workdir, "--loglevel", "warning"]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the private redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def stop_processes(procs, timeout: float = 10.0) -> None:
    """SIGTERM every process, then wait; kill those that outstay the timeout."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def database_url(name: str | None = None, alias: str = "default") -> str:
    """A DATABASE_URL for this process's database `alias` (by default the one it uses now: inside a
    test, the scratch test database), with `name` instead of its NAME when given. The Celery workers,
    servers and commands a test starts get it, so that they read and write what the test sees."""
    from django.db import connections

    db = connections[alias].settings_dict
    name = name or db["NAME"]
    engine = db["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        return f"sqlite:///{name}"
    if engine != "django.db.backends.postgresql":
        raise NotImplementedError(f"no DATABASE_URL for the {engine} engine")
    auth = ""
    if db.get("USER"):
        auth = quote(str(db["USER"]), safe="")
        if db.get("PASSWORD"):
            auth += ":" + quote(str(db["PASSWORD"]), safe="")
        auth += "@"
    host = quote(str(db.get("HOST") or ""), safe="")  # a socket directory is quoted whole
    port = f":{db['PORT']}" if db.get("PORT") else ""
    options = {k: v for k, v in (db.get("OPTIONS") or {}).items() if isinstance(v, str | int)}
    query = f"?{urlencode(options)}" if options else ""
    return f"postgres://{auth}{host}{port}/{quote(str(name), safe='')}{query}"


def drop_scratch_database(url: str, name: str) -> bool:
    """Drop the scratch database `name` on the PostgreSQL server of `url`, if it is still there (a
    run that died before pytest-django dropped it). Only names `make test` makes are accepted."""
    import re

    import psycopg
    from psycopg import sql

    if not re.fullmatch(r"kimp_test_[0-9]+_[0-9a-f]+", name):
        raise ValueError(f"{name!r} is not a scratch database name of `make test`")
    with psycopg.connect(url, dbname="postgres", autocommit=True, connect_timeout=10) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            return False
        force = sql.SQL(" WITH (FORCE)") if conn.info.server_version >= 130000 else sql.SQL("")
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(name), force))
        return True


if __name__ == "__main__":
    # `python -m tests.support drop-database NAME`, with DATABASE_URL naming the server: make test's
    # clean-up after the suite, whatever happened to it.
    import os
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "drop-database":
        sys.exit("usage: python -m tests.support drop-database NAME   (DATABASE_URL names the server)")
    if drop_scratch_database(os.environ["DATABASE_URL"], sys.argv[2]):
        print(f"dropped the scratch database {sys.argv[2]} that the run left behind")
