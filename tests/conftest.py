"""Shared fixtures: real files on disk, the shared real data set, a Prefect test server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meterflow.storage import LocalStorage

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("MF_SHARED_DATA", ROOT.parent / "shared" / "data"))


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
