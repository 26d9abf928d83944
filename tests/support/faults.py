"""Private services for fault tests, which stop and start them: a Redis broker and a PostgreSQL cluster of the test's
own (own port, own data folder), never the shared ones. Ports are shifted by VISUS_PORT_OFFSET like make test's."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support import require_service

OFFSET = int(os.environ.get("VISUS_PORT_OFFSET", "0"))


def free_port(preferred: int) -> int:
    """``preferred`` if nothing listens there, else any free port the kernel gives."""
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise RuntimeError("no free port")


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} after {timeout:.0f}s")


class PrivateRedis:
    """``redis-server`` on a port of its own, without persistence: stopped, it refuses connections; started again, it
    is empty (as a broker that lost its messages)."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server") or ""
        require_service("redis-server", bool(self.binary), "install Debian's redis-server (make test does)")
        self.port = free_port(17379 + OFFSET)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.ping, 20, f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


@contextlib.contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """Point this process's Celery app at another broker (its connection and producer pools too), then back."""
    from platform_core.celery import app

    saved = (app.conf.broker_url, app._pool, app.amqp._producer_pool)
    environment = dict(os.environ)  # Celery reads CELERY_BROKER_URL from the environment before its own settings
    os.environ["CELERY_BROKER_URL"] = url
    os.environ.pop("CELERY_BROKER_WRITE_URL", None)
    app.conf.broker_url = url
    app._pool, app.amqp._producer_pool = None, None
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            app.pool.force_close_all()
        os.environ.clear()
        os.environ.update(environment)
        app.conf.broker_url = saved[0]
        app._pool, app.amqp._producer_pool = saved[1], saved[2]


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian keeps them under /usr/lib/postgresql/<version>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own: initdb into a temporary folder, pg_ctl start/stop/restart on a port of
    its own. As root, the server runs as the ``postgres`` account (PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        require_service("PostgreSQL server binaries", self.bin is not None, "no /usr/lib/postgresql/*/bin/pg_ctl")
        self.dir = Path(tempfile.mkdtemp(prefix="visus-pg-"))
        self.data = self.dir / "data"
        self.port = free_port(17432 + OFFSET)
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            import pwd

            account = pwd.getpwnam("postgres")
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            self.run_as = ["runuser", "-u", "postgres", "--"]

    def url(self, name: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            [*self.run_as, *args], check=True, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        self._run(
            str(self.bin / "pg_ctl"), action, "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w",
            "-t", "30", "-o", options, *extra,
        )  # fmt: skip

    def init(self) -> None:
        assert self.bin is not None
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        self._pg_ctl("start")

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, new ones refused."""
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "fast")

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")

    def create_database(self, name: str) -> None:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()

    def log_tail(self) -> str:
        try:
            return (self.dir / "server.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
