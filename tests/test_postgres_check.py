"""`make test` without the PostgreSQL server it needs: one line saying what to do, before any
test runs; `-m "not postgres"` runs the rest."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import ROOT, free_port


def pytest_run(*args: str, postgres: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MF_TEST_POSTGRES": postgres}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)


def test_a_missing_postgres_server_stops_the_session_in_one_line():
    port = free_port()  # nothing listens there
    closed = f"port={port} password=not-for-logs"
    out = pytest_run("tests/test_warehouse_backends.py", postgres=closed)
    assert out.returncode == 4, out.stdout + out.stderr
    assert out.stderr.strip().splitlines() == [
        f"ERROR: PostgreSQL 'host=127.0.0.1 port={port} dbname=test user=postgres password=***' "
        f"(MF_TEST_POSTGRES) does not answer (connection failed: connection to server at "
        f'"127.0.0.1", port {port} failed: Connection refused Is the server running on that host '
        "and accepting TCP/IP connections?): start it, point MF_TEST_POSTGRES at one, or skip "
        "the tests that need it with -m 'not postgres' (README: what `make test` needs)"
    ]
    assert "passed" not in out.stdout and "failed" not in out.stdout
    rest = pytest_run("tests/test_warehouse_backends.py", "-m", "not postgres", postgres=closed)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert re.search(r"\b4 passed, \d+ deselected", rest.stdout), rest.stdout
