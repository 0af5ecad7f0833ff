"""End to end under Prefect: dispatch two participants from XML to a queryable warehouse."""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.events.filters import (
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventResourceFilter,
)
from prefect.futures import wait
from prefect.settings import PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS, temporary_settings

import flows.dispatch
from flows.collect import collect
from flows.demo import DEMO_KEYS, WW_DEVICE, demo_sources
from flows.dispatch import _collect_and_load, completed, dispatch, participant_groups
from flows.mrv import mrv
from meterflow.collection.catalog import read_catalog
from meterflow.common import demo_data
from meterflow.common.storage import CONFIG_KEY, LocalStorage
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.fleets import csv_meter, participant_xml
from meterflow.configuration.participants import read_configuration
from meterflow.warehouse.loads import load_at_least
from tasks.collect import collect_groups
from tasks.pool import task_runner, worker_pool

METERFLOW = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "meterflow"
# Three days around the end of daylight saving in Sydney and Melbourne (5 April 2026).
WINDOW = HourWindow(datetime(2026, 4, 3, tzinfo=UTC), datetime(2026, 4, 7, tzinfo=UTC))
ENERGY_METERS = [
    "syd-hq-main",
    "syd-hq-hvac",
    "bne-general",
    "bne-controlled",
    "mel-store-main",
    "per-dc-main",
    "syd-hq-pv",
    "mel-store-pv",
    "per-dc-pv",
]


SHARD_SIZE = 4


def run(data_root, warehouse):
    return dispatch(
        start=WINDOW.start.isoformat(),
        end=WINDOW.end.isoformat(),
        data_root=str(data_root),
        warehouse=str(warehouse),
        shard_size=SHARD_SIZE,
        return_state=True,
    )


def tables(warehouse) -> dict:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
            for t in (
                "dim_participant",
                "dim_property",
                "dim_meter",
                "fact_meter_hourly",
                "fact_hourly",
                "meter_job",
                "meter_task",
                "meter_health",
                "alert_incident",
                "mrv_record",
                "mrv_transition",
            )
        }


@pytest.fixture(scope="module")
def demo(prefect_server, tmp_path_factory):
    data_root = tmp_path_factory.mktemp("e2e") / "data"
    truth = demo_data.generate(data_root, WINDOW)
    warehouse = data_root / "warehouse.duckdb"
    with demo_sources(WINDOW) as emulators:
        state = run(data_root, warehouse)
        truth["per-dc-pv"] = wattwatchers_export_kwh(emulators["wattwatchers"])
        documents = emulators["guardian"].documents()
    return data_root, warehouse, truth, state, documents


def wattwatchers_export_kwh(emulator) -> float:
    """Exported kWh of the solar channel (index 1) in the window, from the emulator's Joules."""
    stamps = range(int(WINDOW.start.timestamp()) + 300, int(WINDOW.end.timestamp()) + 1, 300)
    return sum(emulator.energy(WW_DEVICE, 1, t)[1] for t in stamps) / 3.6e6


def test_dispatch_completes_and_warehouse_totals_equal_source_totals(demo):
    _, warehouse, truth, state, _ = demo
    assert state.is_completed(), state.message
    start, end = WINDOW.start.replace(tzinfo=None), WINDOW.end.replace(tzinfo=None)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        loaded = dict(
            con.execute(
                "SELECT meter_id, sum(value) FROM fact_meter_hourly "
                "WHERE hour_utc >= ? AND hour_utc < ? GROUP BY meter_id",
                [start, end],
            ).fetchall()
        )
        mismatched = con.execute(
            """
            SELECT f.property_id, f.hour_utc, f.value, sum(m.value)
            FROM fact_hourly f
            JOIN dim_meter d ON d.participant_id = f.participant_id
                 AND d.property_id = f.property_id AND d.data_type = f.data_type
                 AND d.role = 'main' AND d.valid_to IS NULL
            JOIN fact_meter_hourly m ON m.participant_id = d.participant_id
                 AND m.meter_id = d.meter_id AND m.hour_utc = f.hour_utc
            WHERE f.data_type IN ('energy', 'solar')
            GROUP BY ALL HAVING abs(f.value - sum(m.value)) > 1e-9
            """
        ).fetchall()
    for meter in ENERGY_METERS:
        assert loaded[meter] == pytest.approx(truth[meter], rel=1e-9), meter
    assert mismatched == []


def test_every_hour_of_the_dst_days_is_loaded_once(demo):
    _, warehouse, _, _, _ = demo
    with duckdb.connect(str(warehouse), read_only=True) as con:
        per_local_day = dict(
            con.execute(
                """
                SELECT strftime(timezone('Australia/Sydney', timezone('UTC', hour_utc)),
                                '%Y-%m-%d'), count(*)
                FROM fact_meter_hourly WHERE meter_id = 'syd-hq-hvac' GROUP BY 1
                """
            ).fetchall()
        )
        duplicates = con.execute(
            "SELECT count(*) - count(DISTINCT (participant_id, meter_id, hour_utc)) "
            "FROM fact_meter_hourly"
        ).fetchone()[0]
    assert per_local_day["2026-04-05"] == 25  # the repeated hour at the end of DST
    assert per_local_day["2026-04-04"] == 24
    assert duplicates == 0


def test_rerun_changes_no_row(demo):
    data_root, warehouse, _, _, _ = demo
    before = tables(warehouse)
    demo_data.generate(data_root, WINDOW)  # the same files arrive again
    with demo_sources(WINDOW) as emulators:
        state = run(data_root, warehouse)
    assert state.is_completed()
    rows = state.result()
    assert sum(r["hours_new"] for r in rows) == 0
    assert sum(r["files_new"] for r in rows) == 0
    assert tables(warehouse) == before
    assert emulators["guardian"].received == []  # no MRV document is sent twice


def test_dispatch_submits_each_verified_mrv_record_once(demo):
    _, warehouse, _, _, documents = demo
    with duckdb.connect(str(warehouse), read_only=True) as con:
        records = con.execute(
            "SELECT r.record_id, r.status, r.coverage, r.reasons, r.energy_kwh, "
            "coalesce(sum(h.value), 0) FROM mrv_record r LEFT JOIN fact_meter_hourly h "
            "ON h.meter_id = r.meter_id AND h.hour_utc >= r.period_start_utc "
            "AND h.hour_utc < r.period_end_utc GROUP BY ALL"
        ).fetchall()
    submitted = {r[0] for r in records if r[1] == "submitted"}
    rejected = [r for r in records if r[1] == "rejected"]
    assert submitted and rejected  # the window covers some local days fully, some not
    assert all(coverage >= 0.9 for _, status, coverage, *_ in records if status == "submitted")
    assert all(
        r[2] < 0.9 and r[3].startswith(f"coverage {r[2]:.1%} is below 90%") for r in rejected
    )
    assert {d["credentialSubject"][0]["mrvRecordId"] for d in documents} == submitted
    assert len(documents) == len(submitted)  # each once
    assert all(abs(kwh - total) < 1e-9 for *_, kwh, total in records)


def test_dispatch_names_its_run_and_leaves_a_summary_artifact(demo):
    data_root, _, _, state, _ = demo
    with get_client(sync_client=True) as client:
        (flow_run,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]))
        )
        task_names = {
            t.name
            for t in client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id]))
            )
        }
    assert flow_run.name == "dispatch/2026-04-03T00Z..2026-04-07T00Z"
    acme = read_configuration(LocalStorage(data_root, "acme"))
    shards = sorted(n for n in task_names if n.startswith("collect/acme/"))
    assert len(shards) == -(-len(acme.meters) // SHARD_SIZE)  # every meter, SHARD_SIZE a run
    first, last = acme.meters[0].id, acme.meters[SHARD_SIZE - 1].id
    assert shards[0] == f"collect/acme/shard-1-of-{len(shards)} ({first}..{last})"
    (artifact,) = [a for a in artifacts if a.key == "dispatch-summary"]
    table = artifact.data if isinstance(artifact.data, list) else json.loads(artifact.data)
    by_meter = {row["meter"]: row for row in table}
    assert by_meter["syd-hq-pv"]["status"] == "quarantined"
    assert "pv-broken.csv:2" in by_meter["syd-hq-pv"]["why"]
    assert by_meter["syd-hq-hvac"]["hours_new"] >= 96


def test_a_dispatch_run_sends_its_heartbeat(demo):
    """Heartbeats detect crashed runs: they are still sent now that a flow run ends without
    waiting for its heartbeat thread (flows/heartbeats.py)."""
    run_id = demo[3].state_details.flow_run_id
    only_its_heartbeats = EventFilter(
        occurred=EventOccurredFilter(since=datetime(2026, 1, 1, tzinfo=UTC)),
        event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
        resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
    )
    with get_client(sync_client=True) as client:
        for _ in range(100):  # the API server stores events a moment after they arrive
            if heartbeats := client.read_events(only_its_heartbeats, limit=1).events:
                break
            time.sleep(0.1)
    assert heartbeats, f"no heartbeat event for dispatch run {run_id}"


@pytest.mark.parametrize("grouped", [False, True], ids=["a-task-each", "one-task-for-all"])
def test_a_broken_participant_and_a_broken_meter_fail_alone(
    prefect_server, tmp_path, monkeypatch, grouped
):
    """Participants are collected in groups (a task run each) and loaded together: a broken
    one fails alone whether it shares its group and its load with the others or not."""
    if grouped:
        monkeypatch.setattr(flows.dispatch, "participant_groups", lambda ids: {"all": ids})
    data_root = tmp_path / "data"
    demo_data.generate(data_root, WINDOW)
    # initech's XML has a bad time zone; acme's Solcast meter names a block that does not exist,
    # and acme has a planted link into globex's storage (quarantined, never followed).
    shutil.copytree(data_root / "globex", data_root / "initech")
    config = data_root / "initech" / "config" / "participant.xml"
    config.write_text(
        config.read_text()
        .replace('id="globex"', 'id="initech"')
        .replace("Australia/Perth", "Australia/Atlantis")
    )
    acme = data_root / "acme" / "config" / "participant.xml"
    acme.write_text(acme.read_text().replace('"acme-solcast"', '"acme-solcast-gone"'))
    planted = data_root / "acme" / "exports" / "bne-temp" / "globex.csv"
    os.symlink(data_root / "globex" / "nem12" / "NEM12_VM_202604.zip", planted)
    with demo_sources(WINDOW):
        state = run(data_root, tmp_path / "wh.duckdb")
    assert state.is_failed()
    assert "initech/*: initech:config/participant.xml:" in state.message
    assert "unknown time zone 'Australia/Atlantis'" in state.message
    assert "acme/bne-pv: meter bne-pv: cannot load block" in state.message
    assert "acme-solcast-gone" in state.message and "bne-temp" not in state.message
    (reason,) = (data_root / "acme" / "quarantine" / "bne-temp").glob("*.reason.json")
    assert "a symbolic link: not read" in reason.read_text()
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        loaded = dict(
            con.execute("SELECT participant_id, count(*) FROM fact_hourly GROUP BY 1").fetchall()
        )
    assert set(loaded) == {"acme", "globex"}  # everyone else was collected and loaded


def test_no_key_appears_in_files_warehouse_artifacts_or_logs(demo):
    data_root, warehouse, _, state, _ = demo
    keys = list(DEMO_KEYS.values())
    files = [p for p in data_root.rglob("*") if p.is_file()]  # raw log, parquet, DuckDB file
    assert any("raw" in p.parts for p in files) and any(p.suffix == ".duckdb" for p in files)
    leaks = [str(p) for p in files if any(k.encode() in p.read_bytes() for k in keys)]
    # DuckDB compresses strings, so ask it rather than grepping its file.
    with duckdb.connect(str(warehouse), read_only=True) as con:
        columns = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE data_type = 'VARCHAR'"
        ).fetchall()
        for table, column in columns:
            for key in keys:
                found = con.execute(
                    f"SELECT count(*) FROM {table} WHERE contains({column}, ?)", [key]
                ).fetchone()[0]
                leaks += [f"{table}.{column}"] * found
    with get_client(sync_client=True) as client:
        flow_run_id = state.state_details.flow_run_id
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    texts = [log.message for log in logs] + [json.dumps(a.data) for a in artifacts]
    assert logs and artifacts
    leaks += [text[:80] for text in texts if any(k in text for k in keys)]
    assert leaks == []


def test_dispatch_writes_and_links_a_report_with_every_chart(demo, tmp_path):
    data_root, warehouse, _, state, _ = demo
    report = (data_root / "acme" / "reports" / "latest.html").read_text()
    for title in (
        "Energy per property, per day",
        "Energy use intensity ranking",
        "Office hours vs out of hours",
        "Carbon per month",
        "Temperature difference vs consumption",
        "Data completeness",
    ):
        assert f"<h2>{title}</h2>" in report
    assert report.count("<svg") == 6 and report.count("<table") == 6
    assert "http" not in report.split("<svg")[0].lower().replace("http://www.w3.org", "")
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    (link,) = [a for a in artifacts if a.key == "report-acme"]
    assert (data_root / "acme" / "reports" / "latest.html").resolve().as_uri() in str(link.data)
    out = tmp_path / "r.html"
    command = [
        str(METERFLOW),
        "report",
        "--participant",
        "globex",
        "--from",
        "2026-04-03",
        "--to",
        "2026-04-07",
        "--warehouse",
        str(warehouse),
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.read_text().count("<svg") >= 5  # globex has no inside temperature to plot


def test_the_mrv_flow_on_its_own_for_the_whole_period_sends_nothing_new(demo):
    data_root, warehouse, _, _, _ = demo
    with demo_sources(WINDOW) as emulators:
        state = mrv(
            "acme",
            until=WINDOW.end.isoformat(),
            data_root=str(data_root),
            warehouse=str(warehouse),
            return_state=True,
        )
        assert emulators["guardian"].received == []
    assert state.is_completed() and state.result() == []  # every interval already extracted
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    (artifact,) = [a for a in artifacts if a.key == "mrv-acme"]
    assert "nothing new" in artifact.description


def test_hours_stored_but_never_loaded_are_loaded_by_the_next_dispatch(prefect_server, tmp_path):
    """An on-demand `collect` (or a dispatcher lost between collecting and loading) leaves its
    hours in storage only; the next dispatch finds nothing to collect and still loads them."""
    data_root = tmp_path / "data"
    storage = LocalStorage(data_root, "later")
    storage.write(CONFIG_KEY, participant_xml("later", [csv_meter("m1", 60)]))
    rows = "".join(f"2026-04-01T{h:02d}:00:00Z,{h}\n" for h in range(24))
    storage.write("exports/m1/day.csv", ("timestamp,value\n" + rows).encode())
    day = {"start": "2026-04-01T00:00+00:00", "end": "2026-04-02T00:00+00:00"}
    collect("later", **day, data_root=str(data_root))
    (run,) = read_catalog(storage).runs  # collected and merged, not loaded
    warehouse = str(tmp_path / "warehouse.duckdb")
    summary = dispatch(**day, data_root=str(data_root), warehouse=warehouse)
    assert [r["hours_new"] for r in summary] == [0]
    with duckdb.connect(warehouse, read_only=True) as con:
        loaded = con.execute("SELECT count(*), sum(value) FROM fact_meter_hourly").fetchone()
        runs = con.execute("SELECT run_id FROM load_log").fetchall()
    assert loaded == (24, sum(range(24)))
    assert runs == [(run["run"],)]  # the warehouse knows it holds that run's hours


def test_a_locked_warehouse_fails_the_loads_and_the_next_dispatch_loads_what_was_collected(
    prefect_server, tmp_path
):
    """Another process writing the DuckDB file: the dispatch still collects and stores every
    participant and ends Failed naming each one, with why; the next dispatch loads the hours
    the failed one stored."""
    data_root, ids = tmp_path / "data", ["north", "south"]
    for pid in ids:
        storage = LocalStorage(data_root, pid)
        storage.write(CONFIG_KEY, participant_xml(pid, [csv_meter("m1", 60)]))
        rows = "".join(f"2026-04-01T{h:02d}:00:00Z,{h}\n" for h in range(24))
        storage.write("exports/m1/day.csv", ("timestamp,value\n" + rows).encode())
    day = {"start": "2026-04-01T00:00+00:00", "end": "2026-04-02T00:00+00:00"}
    warehouse = str(tmp_path / "warehouse.duckdb")
    hold = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held'); time.sleep(600)"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold, warehouse], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        state = dispatch(**day, data_root=str(data_root), warehouse=warehouse, return_state=True)
    finally:
        holder.kill()
        holder.wait()
    assert state.is_failed()
    for pid in ids:
        assert f"{pid}/*: warehouse load failed: " in state.message
    summary = dispatch(**day, data_root=str(data_root), warehouse=warehouse)
    assert [r["hours_new"] for r in summary] == [0, 0]  # collected by the failed dispatch
    with duckdb.connect(warehouse, read_only=True) as con:
        loaded = con.execute(
            "SELECT participant_id, count(*), sum(value) FROM fact_meter_hourly "
            "GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert loaded == [(pid, 24, sum(range(24))) for pid in ids]


def test_an_hourly_dispatch_renders_the_report_once_a_day_unless_told(prefect_server, tmp_path):
    """Reports are documents of days: a dispatch that loads new hours renders the latest report
    only when it is a day old (or missing); `report_every_hours=0` renders it after every load,
    None never."""
    data_root = tmp_path / "data"
    storage = LocalStorage(data_root, "daily")
    storage.write(CONFIG_KEY, participant_xml("daily", [csv_meter("m1", 60)]))
    report = data_root / "daily" / "reports" / "latest.html"
    warehouse = str(tmp_path / "warehouse.duckdb")

    def new_day(day: int, **options) -> None:
        rows = "".join(f"2026-04-{day:02d}T{h:02d}:00:00Z,{h}\n" for h in range(24))
        storage.write(f"exports/m1/{day}.csv", ("timestamp,value\n" + rows).encode())
        window = {
            "start": f"2026-04-{day:02d}T00:00+00:00",
            "end": f"2026-04-{day + 1:02d}T00:00+00:00",
        }
        (summary,) = dispatch(**window, data_root=str(data_root), warehouse=warehouse, **options)
        assert summary["hours_new"] == 24

    new_day(1, report_every_hours=None)
    assert not report.exists()
    new_day(2)
    first = report.read_text()
    assert "2026-04-02" in first
    new_day(3)  # new hours loaded, but the report is minutes old
    assert report.read_text() == first
    new_day(4, report_every_hours=0)
    assert "2026-04-04" in report.read_text() and report.read_text() != first


def test_participants_go_in_one_group_per_worker_process_in_order():
    """Few task runs: each participant goes to the pool and to the flow on its own, whatever
    its group."""
    ids = [f"p{i:03d}" for i in range(101)]
    with temporary_settings({PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS: 2}):
        groups = participant_groups(ids)
        lone = participant_groups(["p000"])
    assert [pid for group in groups.values() for pid in group] == ids  # each once, in order
    assert list(groups) == ["p000..p050", "p051..p100"]
    assert [len(group) for group in groups.values()] == [51, 50]
    assert lone == {"p000": ["p000"]}


def test_participants_are_loaded_as_they_complete_at_least_three_together():
    """Loads wait for at least three participants (or all that are left), whichever task run
    collected them."""
    done = {key: Future() for key in ("p000", "p001", "p002", "p003", "p004")}
    batches = completed({key: [future] for key, future in done.items()})
    got: queue.SimpleQueue[list[str]] = queue.SimpleQueue()
    threading.Thread(target=lambda: [got.put(batch) for batch in batches], daemon=True).start()

    done["p001"].set_result(None)
    done["p000"].set_result(None)
    with pytest.raises(queue.Empty):
        got.get(timeout=0.5)
    done["p002"].set_result(None)
    assert got.get(timeout=5) == ["p001", "p000", "p002"]
    done["p004"].set_result(None)
    with pytest.raises(queue.Empty):
        got.get(timeout=0.5)
    done["p003"].set_result(None)
    assert got.get(timeout=5) == ["p004", "p003"]


def test_many_small_participants_are_loaded_a_quarter_per_worker_at_a_time():
    """A load's fixed cost is paid about a dozen times for 100 participants, not once per three;
    the last loads stay small."""
    batches, left = [], 100
    while left:
        batches.append(load_at_least(left, workers=2))
        left -= batches[-1]
    assert batches == [25, 19, 14, 11, 8, 6, 5, 3, 3, 3, 3]
    assert [load_at_least(n, workers=2) for n in (10, 7, 4, 2)] == [3, 3, 3, 2]


def test_the_worker_processes_go_before_the_last_load(prefect_server, tmp_path):
    """Once every participant is collected and merged, the workers stop: the memory they hold
    is freed while the flow loads the last participants, not after."""
    data_root = tmp_path / "data"
    ids = [f"p{i}" for i in range(4)]
    for pid in ids:
        storage = LocalStorage(data_root, pid)
        storage.write(CONFIG_KEY, participant_xml(pid, [csv_meter("m1", 60)]))
        rows = "".join(f"2026-04-01T{h:02d}:00:00Z,{h}\n" for h in range(24))
        storage.write("exports/m1/day.csv", ("timestamp,value\n" + rows).encode())
    window = HourWindow(datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 4, 2, tzinfo=UTC))
    workers_at_load = []

    def load(participants) -> None:
        last = sum(n for n, _ in workers_at_load) + len(participants) == len(ids)
        deadline = time.monotonic() + (10 if last else 0)  # the last: give them time to exit
        while multiprocessing.active_children() and time.monotonic() < deadline:
            time.sleep(0.05)
        workers_at_load.append((len(participants), len(multiprocessing.active_children())))

    @flow(task_runner=task_runner())
    def collect_and_load() -> list:
        with worker_pool():
            return _collect_and_load(
                str(data_root), ids, [], window, 100, "local", "", load, defaultdict(list)
            )

    assert sorted(p.id for p in collect_and_load()) == ids  # in the order they completed
    assert sum(n for n, _ in workers_at_load) == 4
    assert all(alive for _, alive in workers_at_load[:-1]) and workers_at_load[-1][1] == 0


def test_each_participant_reaches_the_flow_before_its_group_task_run_ends(prefect_server, tmp_path):
    """A group's task run hands each participant to the flow as its worker is done with it:
    the flow loads it while Prefect records the task run's end. A broken participant is handed
    over with its error; a task run that fails before collecting hands its group over failed,
    naming it, so the flow never waits for them."""
    data_root = tmp_path / "data"
    for pid in ("a", "b"):
        storage = LocalStorage(data_root, pid)
        storage.write(CONFIG_KEY, participant_xml(pid, [csv_meter("m1", 60)]))
        rows = "".join(f"2026-04-01T{h:02d}:00:00Z,{h}\n" for h in range(24))
        storage.write("exports/m1/day.csv", ("timestamp,value\n" + rows).encode())
    LocalStorage(data_root, "broken").write(CONFIG_KEY, b"<participant id='broken'>")
    window = HourWindow(datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 4, 2, tzinfo=UTC))
    handed_at, ended_at = {}, {}

    @flow(task_runner=task_runner())
    def two_groups() -> tuple[dict, list]:
        groups = {"a..broken": ["a", "broken"], "b": ["b"]}
        handed, runs = collect_groups(str(data_root), groups, window, 100, True, [])
        failing, failed = collect_groups(str(data_root), {"c": ["c"]}, window, 100, True, 5)
        for pid, future in (handed | failing).items():
            future.add_done_callback(lambda _, pid=pid: handed_at.setdefault(pid, time.monotonic()))
        for run, group in zip(runs, groups.values(), strict=True):
            run.add_done_callback(
                lambda _, group=group: ended_at.update(dict.fromkeys(group, time.monotonic()))
            )
        wait([*runs, *failed])
        return {pid: f.result() for pid, f in (handed | failing).items()}, [
            run.result() for run in runs
        ]

    planned, results = two_groups()
    assert [[p.participant_id for p in result] for result in results] == [["a", "broken"], ["b"]]
    for pid in ("a", "b"):
        assert sum(o.hours_new for o in planned[pid].report.outcomes) == 24
        assert handed_at[pid] < ended_at[pid]
    assert "broken:config/participant.xml" in str(planned["broken"].error)
    assert str(planned["c"].error) == "task run participants/c ended before collecting it"
