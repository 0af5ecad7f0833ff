"""Backfills: killed halfway and run again, they finish the rest only and end with the same
warehouse as an uninterrupted run; a rerun from the archive changes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from flows.backfill import backfill
from meterflow.collection.backfill import BackfillRecord
from meterflow.common import demo_data
from meterflow.common.storage import LocalStorage
from meterflow.common.timeutil import HourWindow

METERFLOW = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "meterflow"
WINDOW = HourWindow(datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 4, 7, tzinfo=UTC))
METERS = ["syd-hq-main", "syd-hq-hvac", "bne-general", "bne-controlled"]


def facts(warehouse: Path) -> dict:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
            for t in ("fact_meter_hourly", "fact_hourly", "dim_calendar")
        }


def cli(data_root: Path, home: Path, *extra: str) -> subprocess.Popen:
    command = [
        str(METERFLOW),
        "backfill",
        "--participant",
        "acme",
        "--from",
        WINDOW.start.isoformat(),
        "--to",
        WINDOW.end.isoformat(),
        "--chunk-days",
        "1",
        "--data-root",
        str(data_root),
        "--warehouse",
        str(data_root / "w.duckdb"),
        *[arg for m in METERS for arg in ("--meter", m)],
        *extra,
    ]
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": "",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def uninterrupted(prefect_server, tmp_path_factory):
    data_root = tmp_path_factory.mktemp("whole") / "data"
    demo_data.generate(data_root, WINDOW)
    result = backfill(
        participant_id="acme",
        start=WINDOW.start.isoformat(),
        end=WINDOW.end.isoformat(),
        meter_ids=METERS,
        chunk_days=1,
        data_root=str(data_root),
        warehouse=str(data_root / "w.duckdb"),
    )
    assert result == {"chunks": 6, "done_now": 6, "done_before": 0}
    return data_root


def test_killed_backfill_resumes_and_ends_with_the_same_warehouse(uninterrupted, tmp_path):
    data_root = tmp_path / "data"
    demo_data.generate(data_root, WINDOW)
    record = BackfillRecord(LocalStorage(data_root, "acme"), METERS, WINDOW, True)
    first = cli(data_root, tmp_path / "prefect")
    deadline = time.monotonic() + 120
    while len(record.done()) < 1 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    ended_early = first.poll() is not None
    if not ended_early:
        os.killpg(first.pid, signal.SIGKILL)  # as an operator's Ctrl-C / a lost worker would
    output, _ = first.communicate()
    done_before = len(record.done())
    assert not ended_early and 1 <= done_before < 6, f"not interrupted part-way:\n{output}"
    second = cli(data_root, tmp_path / "prefect")
    output, _ = second.communicate(timeout=240)
    assert second.returncode == 0, output
    assert f"backfill done: {6 - done_before} chunks now, {done_before} before" in output
    assert facts(data_root / "w.duckdb") == facts(uninterrupted / "w.duckdb")


def load_log(warehouse: Path) -> list:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute("SELECT * FROM load_log ORDER BY ALL").fetchall()


def test_rebuilding_from_the_archive_changes_nothing(uninterrupted):
    before = facts(uninterrupted / "w.duckdb")
    log = load_log(uninterrupted / "w.duckdb")
    result = backfill(
        participant_id="acme",
        start=WINDOW.start.isoformat(),
        end=WINDOW.end.isoformat(),
        meter_ids=METERS,
        force_override=False,
        chunk_days=3,
        data_root=str(uninterrupted),
        warehouse=str(uninterrupted / "w.duckdb"),
    )
    assert result["done_now"] == 2
    assert facts(uninterrupted / "w.duckdb") == before
    assert load_log(uninterrupted / "w.duckdb") == log  # a run keeps the time of its first load
    raws = [p for p in (uninterrupted / "acme" / "raw").rglob("*") if p.is_file()]
    assert len(raws) == len({p.name for p in raws})  # nothing archived twice
