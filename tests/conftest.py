"""Shared fixtures: real files on disk, the shared real data set, a Prefect test server, the
PostgreSQL server, and S3 (moto) and GCS (gcp-storage-emulator) servers on loopback."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import psycopg
import pytest
from gcp_storage_emulator.server import create_server
from moto.server import ThreadedMotoServer
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from meterflow.common.storage import LocalStorage

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("MF_SHARED_DATA", ROOT.parent / "shared" / "data"))
# The PostgreSQL server the tests use: these parameters, overridden by any libpq parameters in
# MF_TEST_POSTGRES, e.g. "port=5433 password=..." (README: what `make test` needs).
POSTGRES = {
    "host": "127.0.0.1",
    "port": "5432",
    "dbname": "test",
    "user": "postgres",
    **conninfo_to_dict(os.environ.get("MF_TEST_POSTGRES", "")),
}


def pytest_configure(config):
    config.addinivalue_line("markers", "postgres: needs the PostgreSQL server in MF_TEST_POSTGRES")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: `-m "not postgres"` runs without it
def pytest_collection_modifyitems(items):
    for item in items:
        if "postgres" in item.fixturenames:
            item.add_marker("postgres")


def pytest_collection_finish(session):
    """Stop before the first test, in one line, if selected tests need a PostgreSQL server that
    does not answer (rather than each of them failing deep inside psycopg)."""
    needed = any("postgres" in item.fixturenames for item in session.items)
    if needed and not session.config.option.collectonly:
        try:
            psycopg.connect(**POSTGRES, connect_timeout=3).close()
        except psycopg.Error as exc:
            shown = make_conninfo(
                **{**POSTGRES, **({"password": "***"} if "password" in POSTGRES else {})}
            )
            raise pytest.UsageError(
                f"PostgreSQL {shown!r} (MF_TEST_POSTGRES) does not answer "
                f"({' '.join(str(exc).split())}): start it, point MF_TEST_POSTGRES at one, or skip "
                "the tests that need it with -m 'not postgres' (README: what `make test` needs)"
            ) from None


@pytest.fixture(scope="session")
def postgres() -> dict[str, str]:
    """The PostgreSQL server's connection parameters: host, port, dbname, user (password)."""
    return dict(POSTGRES)


@pytest.fixture
def shared_data() -> Path:
    """The team's real data set (never committed); tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set MF_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def storage(tmp_path) -> LocalStorage:
    return LocalStorage(tmp_path / "data", "acme")


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect API server (SQLite) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """A moto S3 server on loopback, for the whole session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def gcs_endpoint() -> str:
    """A gcp-storage-emulator server on loopback (in memory), for the whole session."""
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
