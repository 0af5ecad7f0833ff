"""Real Prefect processes for deployment tests: `prefect server start` and `prefect worker start`,
each in its own session so that a test can stop (or kill) it with everything it started."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import requests
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
PREFECT = ROOT / ".venv" / "bin" / "prefect"
SUBMITTED = re.compile(r"Worker '(?P<worker>[^']+)' submitting flow run '(?P<run>[0-9a-f-]{36})'")


def prefect_cli(env: dict[str, str], *args: str) -> str:
    """Run a `prefect` command from the project folder; fail with its output if it fails."""
    out = subprocess.run([PREFECT, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise AssertionError(f"prefect {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, read from /proc (flow runs start their own sessions)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found.extend(children)
        todo.extend(children)
    return found


class Process:
    """A command in its own session with its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("w")
        self.popen = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL it and every process it started, as when its machine is lost."""
        tree = [self.popen.pid, *descendants(self.popen.pid)]
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.popen.wait(timeout=30)
        self._out.close()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL what is left of it after 30 s."""
        if self.popen.poll() is None:
            tree = [self.popen.pid, *descendants(self.popen.pid)]
            self.popen.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=30)
            for pid in tree:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=10)
        self._out.close()


@contextlib.contextmanager
def prefect_server(
    home: Path,
    database_url: str | None = None,
    *,
    auth_string: str | None = None,
    host: str = "127.0.0.1",
) -> Iterator[tuple[str, dict[str, str]]]:
    """A real `prefect server start` on a free port of `host` (SQLite in `home`, or the given
    database), with basic auth if `auth_string` is given; yields its API URL and the environment
    that points a CLI or worker at it (with the auth string)."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": "",
    }
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    client_env = {**env}
    if auth_string:
        env["PREFECT_SERVER_API_AUTH_STRING"] = client_env["PREFECT_API_AUTH_STRING"] = auth_string
    port = free_port(host)
    command = [str(PREFECT), "server", "start", "--host", host, "--port", str(port)]
    server = Process(command, env, home / "server.log")
    url = f"http://{host}:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            if server.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"prefect server did not start:\n{server.text()[-3000:]}")
            time.sleep(0.5)
        yield url, {**client_env, "PREFECT_API_URL": url}
    finally:
        server.stop()


@contextlib.contextmanager
def talking_to(url: str, auth_string: str | None = None) -> Iterator[None]:
    """Point this process's Prefect client at a server process (with its auth string); on
    leaving, send what the log and event workers still hold, while that server is up (else they
    retry a dead server for minutes when the test session ends)."""
    with temporary_settings({PREFECT_API_URL: url, PREFECT_API_AUTH_STRING: auth_string}):
        try:
            yield
        finally:
            APILogWorker.drain_all()
            EventsWorker.drain_all()


def start_worker(env: dict[str, str], name: str, log: Path, *args: str) -> Process:
    """`prefect worker start` on the meterflow-process pool, polling every second."""
    command = [str(PREFECT), "worker", "start", "--pool", "meterflow-process", "--name", name]
    return Process([*command, *args], {**env, "PREFECT_WORKER_QUERY_SECONDS": "1"}, log)


def submitted_runs(*workers: tuple[str, Process]) -> dict[str, str]:
    """Flow run id -> the worker that ran it, from the workers' own logs."""
    return {
        match["run"]: name
        for name, worker in workers
        for match in SUBMITTED.finditer(worker.text())
    }
