"""Throw-away servers for tests that stop a database or a cache mid-run: a PostgreSQL cluster initdb'd into
a temporary folder and a redis-server, each on a free port of 127.0.0.1, started and stopped by its own
pid, never the machine's shared instances."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def started(args: list[str], ready: str, log_path: Path, *, timeout: float = 180) -> Iterator[subprocess.Popen[bytes]]:
    """``args`` run in their own process group (output to ``log_path``) until GET ``ready`` answers 200;
    stopped by the pid they were started with (SIGTERM, then SIGKILL after 30 s)."""
    import httpx

    with log_path.open("w") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    if httpx.get(ready, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{args[0]} did not become ready:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.3)
            yield proc
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers, by the pid it was started with
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_package(package: str, present: Callable[[], bool]) -> None:
    """Install the Debian ``package`` when ``present()`` says it is missing; fail, naming it, when that does
    not help (these tests never skip quietly)."""
    if present():
        return
    subprocess.run(["apt-get", "install", "-y", "-q", package], capture_output=True, timeout=600, check=False)
    if not present():
        pytest.fail(f"the Debian package {package!r} is missing and `apt-get install -y {package}` did not install it")


def _wait(ok, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not come up in {timeout:.0f} s")
        time.sleep(0.2)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Redis:
    """redis-server on a free port, persisting to its folder (append-only file): a restart keeps the data."""

    def __init__(self, folder: Path) -> None:
        ensure_package("redis-server", lambda: shutil.which("redis-server") is not None)
        self.folder, self.port = folder, free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:  # Feast's connection string
        return f"127.0.0.1:{self.port},db=0"

    def start(self) -> None:
        args = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder),
                "--appendonly", "yes", "--appendfsync", "always", "--save", ""]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: _answers(self.port), "redis-server")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # as a crash would: no goodbye
            self.proc.wait(timeout=30)
        self.proc = None


class Postgres:
    """A PostgreSQL cluster of its own (initdb into ``folder``; as the postgres user when run as root, which
    initdb refuses), trust auth, on a free port."""

    def __init__(self, folder: Path) -> None:
        ensure_package("postgresql", lambda: bool(glob.glob("/usr/lib/postgresql/*/bin/initdb")))
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        self.bin = Path(found[-1]).parent
        self.folder, self.port = folder, free_port()
        self.data = folder / "data"
        self.as_root = os.geteuid() == 0
        folder.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            shutil.chown(folder, "postgres", "postgres")
            for parent in [folder, *folder.parents]:  # the postgres user must reach its folder
                os.chmod(parent, os.stat(parent).st_mode | 0o011)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.folder / "log"), "-w", "start")
        _wait(lambda: _answers(self.port), "postgres")

    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        """Killed as a crash would kill it (SIGQUIT to the postmaster: immediate shutdown, no checkpoint)."""
        if (self.data / "postmaster.pid").exists():
            pid = self.pid()
            os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + 30
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
