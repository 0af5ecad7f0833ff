"""Converting storage from the per-meter layout: the demo's data, as the last release with that
layout wrote it (its own code, run from git), converts to the columnar layout, and a dispatch of
the same window on it leaves every warehouse row as it was and finds nothing new."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import duckdb
import pytest

from flows.demo import demo_sources
from meterflow.common import demo_data
from meterflow.common.storage import LocalStorage

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
METERFLOW = ROOT / ".venv" / "bin" / "meterflow"
# The last release that stored participants per meter (main before the columnar core).
PER_METER_RELEASE = "32c81dc"
pytestmark = pytest.mark.slow
COMPARED = ("fact_meter_hourly", "fact_hourly", "dim_calendar", "dim_meter", "dim_property")


def old_release(tmp: Path) -> Path:
    """The per-meter release's code, from this repository's history."""
    found = subprocess.run(
        ["git", "-C", str(ROOT), "archive", PER_METER_RELEASE], capture_output=True
    )
    if found.returncode != 0:
        pytest.skip(f"commit {PER_METER_RELEASE} is not in this clone's history (shallow?)")
    tree = tmp / "release"
    with tarfile.open(fileobj=io.BytesIO(found.stdout)) as archive:
        archive.extractall(tree, filter="data")
    return tree


def rows(warehouse: Path, like: Path) -> dict:
    """The compared tables' rows, in the columns the release's own warehouse (`like`) has:
    columns added since (e.g. the calendar's closures) are new, not changed rows."""
    with duckdb.connect(str(like), read_only=True) as con:
        columns = {
            t: [c for c in con.execute(f"SELECT * FROM {t} LIMIT 0").fetchdf().columns]
            for t in COMPARED
        }
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            t: con.execute(
                f"SELECT {', '.join(c for c in columns[t] if c != 'valid_from')} FROM {t} "
                "ORDER BY ALL"
            ).fetchall()
            for t in COMPARED
        }


@pytest.fixture(scope="module")
def per_meter_demo(tmp_path_factory):
    """The demo run by the per-meter release: its storage and its warehouse."""
    tmp = tmp_path_factory.mktemp("migrate")
    tree = old_release(tmp)
    data_root = tmp / "data"
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "PREFECT_HOME": str(tmp / "prefect"),
        "PREFECT_API_URL": "",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
    code = f"import sys; from flows.demo import run_demo; sys.exit(run_demo({str(data_root)!r}))"
    done = subprocess.run(
        [str(PYTHON), "-c", code], cwd=tree, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (data_root / "acme" / "ledger").is_dir()  # the per-meter layout
    before = tmp / "before.duckdb"
    shutil.copy(data_root / "warehouse.duckdb", before)
    return data_root, before


def test_the_demo_converts_and_a_dispatch_then_changes_no_warehouse_row(
    per_meter_demo, prefect_server
):
    data_root, before = per_meter_demo
    raw_before = sum(1 for p in (data_root / "acme" / "raw").rglob("*") if p.is_file())
    # The columnar code refuses the old layout rather than see its data as missing.
    from flows.dispatch import dispatch

    window = demo_data.WINDOW
    with demo_sources(window):
        refused = dispatch(
            start=window.start.isoformat(),
            end=window.end.isoformat(),
            data_root=str(data_root),
            warehouse=str(data_root / "warehouse.duckdb"),
            return_state=True,
        )
    assert refused.is_failed() and "meterflow migrate-storage" in refused.message

    out = subprocess.run(
        [str(METERFLOW), "migrate-storage", "--data-root", str(data_root)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "acme: " in out.stdout and "payloads and" in out.stdout
    acme = LocalStorage(data_root, "acme")
    assert not acme.list("ledger/") and not acme.list("state/unloaded/")
    assert all(key.count("/") == 2 for key in acme.list("standardised/"))  # per type and day
    assert len(acme.list("raw/")) < raw_before  # runs, not one object per payload

    with demo_sources(window):
        rerun = dispatch(
            start=window.start.isoformat(),
            end=window.end.isoformat(),
            data_root=str(data_root),
            warehouse=str(data_root / "warehouse.duckdb"),
        )
    assert sum(r["hours_new"] for r in rerun) == 0
    assert rows(data_root / "warehouse.duckdb", before) == rows(before, before)
