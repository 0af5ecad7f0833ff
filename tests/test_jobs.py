"""Meter jobs, their tasks, meter health and alerts: ETL jobs in the XML, a task per interval
that a rerun updates (never duplicates), and one message per incident on a real webhook."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import duckdb
import pandas as pd
import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock

from blocks import WattwatchersCredentials
from connectors import health_thresholds
from emulators.wattwatchers import WattwatchersEmulator
from emulators.webhook import WebhookReceiver
from flows.cli import main
from flows.dispatch import dispatch
from meterflow.collection.plan import plan_meters
from meterflow.collection.shards import MeterOutcome
from meterflow.common.errors import ConfigError
from meterflow.common.storage import CONFIG_KEY, LocalStorage
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.fleets import participant_xml, wattwatchers_meter
from meterflow.configuration.participant_xml import load_participant
from meterflow.jobs import alerts, health
from meterflow.jobs.etl import etl_executions, with_hours
from meterflow.jobs.health import Thresholds
from meterflow.jobs.track import track
from meterflow.warehouse.duck import DuckDBWarehouse

KEY = "key_" + "f1ee7" * 6
PARTICIPANTS = ["acme", "globex"]
DEVICES = ["D100000000001", "D100000000002", "D100000000003"]
HOUR = timedelta(hours=1)


def config(job_lines: str, extra: str = "") -> bytes:
    return f"""<participant id="acme" name="Acme">
  <properties>
    <property id="hq" name="HQ" timezone="Australia/Sydney" country="AU" floorArea="100">
      <meter id="main" dataType="energy"{extra}>
        <csv path="exports/main/" kind="interval" unit="kWh"/>
{job_lines}
      </meter>
    </property>
  </properties>
</participant>""".encode()


def test_etl_jobs_are_read_and_a_meter_without_one_has_an_implicit_job():
    acme = load_participant(
        config('        <job type="etl" start="2026-03-01" end="2026-04-01" interval="1h"/>')
    )
    (job,) = acme.meter("main").etl_jobs
    assert (job.id, job.interval, job.implicit) == ("etl-1h-20260301", "1h", False)
    (implicit,) = load_participant(config("")).meter("main").etl_jobs
    assert (implicit.id, implicit.start, implicit.end, implicit.implicit) == (
        "etl-1d",
        None,
        None,
        True,
    )


def test_overlapping_jobs_of_one_type_are_an_error_naming_the_line():
    jobs = """        <job type="etl" start="2026-03-01" end="2026-04-01" interval="1d"/>
        <job type="mrv" start="2026-03-01" interval="1d" guardian="acme-guardian"/>
        <job type="etl" start="2026-03-31" interval="1h"/>"""
    with pytest.raises(ConfigError) as caught:
        load_participant(config(jobs), "acme.xml")
    assert str(caught.value) == (
        "acme.xml:8: meter main: this etl job overlaps the one on line 6 "
        "(jobs of one type on a meter must not overlap)"
    )
    # back to back is not an overlap; an MRV job needs its Guardian block, an ETL job has none
    load_participant(config(jobs.replace('start="2026-03-31"', 'start="2026-04-01"')))
    with pytest.raises(ConfigError, match=r":6: meter main: an MRV job needs guardian"):
        load_participant(config('        <job type="mrv" start="2026-03-01" interval="1d"/>'))
    with pytest.raises(ConfigError, match=r"guardian only apply to an MRV job"):
        load_participant(
            config('        <job type="etl" start="2026-03-01" interval="1d" guardian="g"/>')
        )


def test_a_meter_is_collected_only_where_its_etl_jobs_are(tmp_path):
    storage = LocalStorage(tmp_path, "acme")
    jobs = '        <job type="etl" start="2026-04-02" end="2026-04-03" interval="1d"/>'
    acme = load_participant(config(jobs))
    window = HourWindow(datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 4, 4, tzinfo=UTC))

    class Api:  # a connector that fetches windows (not one polling files)
        polls = False

    (planned,) = plan_meters(storage, acme, window, lambda meter: Api)
    # 2 April in Sydney (AEDT until the 5th): 1 April 13:00 to 2 April 13:00 UTC
    assert (planned.window.start, planned.window.end, planned.hours_pending) == (
        datetime(2026, 4, 1, 13, tzinfo=UTC),
        datetime(2026, 4, 2, 13, tzinfo=UTC),
        24,
    )
    later = HourWindow(datetime(2026, 4, 5, tzinfo=UTC), datetime(2026, 4, 6, tzinfo=UTC))
    assert plan_meters(storage, acme, later, lambda meter: Api) == []


def test_silences_replay_what_hourly_dispatches_would_have_alerted():
    hours = pd.DataFrame(
        {
            "meter_id": "m",
            "hour_utc": [pd.Timestamp("2026-04-01") + h * HOUR for h in [*range(10), 15, 16]],
        }
    )
    limits = {"m": Thresholds(HOUR, 3 * HOUR)}
    start, end = datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 4, 2, tzinfo=UTC)
    outage, lasting = health.silences(hours, limits, start, end).to_dict("records")
    # data ends 10:00; dispatches at 13:00 (3 h behind) stay quiet, 14:00 alerts; 15:00 is
    # back and collected by the 16:00 dispatch; after 17:00 it is silent to the end (7 h > 3 h)
    assert outage == {
        "meter_id": "m",
        "since": pd.Timestamp("2026-04-01 10:00"),
        "alerted": pd.Timestamp("2026-04-01 14:00"),
        "resolved": pd.Timestamp("2026-04-01 16:00"),
    }
    assert (lasting["since"], lasting["alerted"]) == (
        pd.Timestamp("2026-04-01 17:00"),
        pd.Timestamp("2026-04-01 21:00"),
    )
    assert lasting["resolved"] is None or pd.isna(lasting["resolved"])
    assert len(health.silences(hours, {"m": Thresholds(HOUR, 8 * HOUR)}, start, end)) == 0


# --- under Prefect: dispatches against a Wattwatchers emulator and a webhook receiver ----------


@pytest.fixture
def fleet(prefect_server, tmp_path):
    """Three Wattwatchers meters of one participant whose alerts go to a webhook on 127.0.0.1."""
    first = datetime(2026, 5, 1, tzinfo=UTC)
    ww = WattwatchersEmulator(api_keys={KEY: DEVICES}, first_ts=int(first.timestamp()))
    receiver = WebhookReceiver()
    with ww, receiver:
        WattwatchersCredentials(api_key=KEY, base_url=ww.url).save("fleet-ww", overwrite=True)
        CustomWebhookNotificationBlock(
            name="ops",
            url=f"{receiver.url}/hooks/meterflow",
            json_data={"subject": "{{subject}}", "body": "{{body}}"},
            allow_private_urls=True,
        ).save("fleet-ops", overwrite=True)
        storage = LocalStorage(tmp_path / "data", "fleet")
        meters = [wattwatchers_meter(f"ww-{d[-1]}", d, "fleet-ww") for d in DEVICES]
        storage.write(
            CONFIG_KEY, participant_xml("fleet", meters, notify="custom-webhook/fleet-ops")
        )
        yield ww, receiver, tmp_path


def dispatch_until(tmp_path, end: datetime, hours: int = 24, notify: str | None = None):
    return dispatch(
        start=(end - hours * HOUR).isoformat(),
        end=end.isoformat(),
        data_root=str(tmp_path / "data"),
        warehouse=str(tmp_path / "warehouse.duckdb"),
        report_every_hours=None,
        notify=notify,
        return_state=True,
    )


def query(tmp_path, sql: str) -> list[tuple]:
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_a_device_silent_for_six_hours_alerts_once_and_resolves_once(fleet):
    ww, receiver, tmp_path = fleet
    outage = datetime(2026, 5, 4, 2, tzinfo=UTC)  # device 2 buffers 02:00..08:00, then back-fills
    ww.hide(int(outage.timestamp()) + 1, int((outage + 6 * HOUR).timestamp()) + 1, [DEVICES[1]])
    states = []
    for hour in range(-1, 10):  # hourly dispatches from 01:00 to 11:00
        now = outage + hour * HOUR
        ww.set_now(int(now.timestamp()))
        if now >= outage + 6 * HOUR:
            ww.release()
        assert dispatch_until(tmp_path, now).is_completed()
        states.append(query(tmp_path, "SELECT state FROM meter_health WHERE meter_id = 'ww-2'"))
    # silent once 4 h behind (the Wattwatchers default) at 07:00; has data at 08:00
    assert [s[0][0] for s in states] == ["ok"] * 4 + ["late"] * 2 + ["silent"] + ["ok"] * 4
    told = receiver.received()
    assert [m["subject"] for m in told] == [
        "[meterflow] fleet: meter silent ww-2",
        "[meterflow] resolved: fleet: meter silent ww-2",
    ]
    assert told[0]["body"] == (
        "fleet: meter ww-2 (property site) is silent: no new data since 2026-05-04 02:00 UTC."
    )
    assert told[1]["body"] == (
        "fleet: resolved at 2026-05-04 08:00 UTC: meter ww-2 (property site) has data again "
        "(silent since 2026-05-04 02:00 UTC)."
    )
    (incident,) = query(
        tmp_path,
        "SELECT subject, opened_utc, resolved_utc, opened_sent_utc IS NOT NULL, "
        "resolved_sent_utc IS NOT NULL FROM alert_incident",
    )
    assert incident == ("ww-2", datetime(2026, 5, 4, 7), datetime(2026, 5, 4, 8), True, True)
    # the back-filled hours are in, and the task of that local day says so
    produced = query(
        tmp_path,
        "SELECT meter_id, hours_produced, retry_count, status FROM meter_task "
        "WHERE interval_start_utc = '2026-05-03 14:00' ORDER BY meter_id",
    )
    assert produced == [(f"ww-{d[-1]}", 21, 0, "done") for d in DEVICES]


def test_a_failing_source_retried_twice_keeps_one_task_with_both_errors(fleet):
    ww, receiver, tmp_path = fleet
    day_end = datetime(2026, 5, 3, 14, tzinfo=UTC)  # a whole local day in Sydney (AEST)
    ww.set_now(int(day_end.timestamp()))
    for status in (401, 403):  # the key is refused, then forbidden: each run fails fast
        ww.inject(status, path=f"/long-energy/{DEVICES[1]}")
        assert not dispatch_until(tmp_path, day_end).is_completed()
    task = "SELECT task_id, stage, status, retry_count, errors, hours_produced FROM meter_task "
    ((task_id, stage, status, retries, errors, hours),) = query(
        tmp_path, task + "WHERE meter_id = 'ww-2'"
    )
    assert (task_id, stage, status, retries) == (
        "ww-2/etl-1d@2026-05-02T14:00Z",
        "collection",
        "failed",
        2,
    )
    errors = json.loads(errors)
    assert [e["stage"] for e in errors] == ["collection", "collection"]
    assert "401" in errors[0]["message"] and "403" in errors[1]["message"]
    assert all(e["type"] == "SourceRejected" and "ww-2" in e["message"] for e in errors)
    assert KEY not in json.dumps(errors)
    assert dispatch_until(tmp_path, day_end).is_completed()  # the source is back
    ((task_id, stage, status, retries, errors, hours),) = query(
        tmp_path, task + "WHERE meter_id = 'ww-2'"
    )
    assert (task_id, stage, status, retries, hours) == (
        "ww-2/etl-1d@2026-05-02T14:00Z",
        "ingestion",
        "done",
        2,
        24,
    )
    assert len(json.loads(errors)) == 2  # the history stays
    assert query(tmp_path, "SELECT count(*) FROM meter_task") == [(3,)]
    # a rerun of the day changes no task (nothing new)
    before = query(tmp_path, "SELECT * FROM meter_task ORDER BY task_id")
    assert dispatch_until(tmp_path, day_end).is_completed()
    assert query(tmp_path, "SELECT * FROM meter_task ORDER BY task_id") == before
    assert receiver.received() == []  # two failures are not yet `failing` (three are)


def test_a_configuration_that_stops_validating_is_told_once_to_the_platform(fleet):
    """Its own block is in the XML that no longer reads: the platform's block is told."""
    ww, receiver, tmp_path = fleet
    storage = LocalStorage(tmp_path / "data", "fleet")
    good = storage.read(CONFIG_KEY)
    storage.write(CONFIG_KEY, good.replace(b'dataType="energy"', b'dataType="gas"', 1))
    day_end = datetime(2026, 5, 3, 14, tzinfo=UTC)
    ww.set_now(int(day_end.timestamp()))
    for hour in (0, 1):
        state = dispatch_until(tmp_path, day_end + hour * HOUR, notify="custom-webhook/fleet-ops")
        assert not state.is_completed()
    storage.write(CONFIG_KEY, good)
    assert dispatch_until(tmp_path, day_end + 2 * HOUR, notify="custom-webhook/fleet-ops")
    opened, resolved = receiver.received()
    assert opened["subject"] == "[meterflow] fleet: config invalid"
    assert "config/participant.xml:5:" in opened["body"] and "gas" in opened["body"]
    assert resolved["subject"] == "[meterflow] resolved: fleet: config invalid"
    assert "resolved at 2026-05-03 16:00 UTC" in resolved["body"]


def test_jobs_tasks_and_status_commands(fleet, capsys):
    ww, _, tmp_path = fleet
    day_end = datetime(2026, 5, 3, 14, tzinfo=UTC)
    ww.set_now(int(day_end.timestamp()))
    assert dispatch_until(tmp_path, day_end).is_completed()
    warehouse = ["--warehouse", str(tmp_path / "warehouse.duckdb")]
    assert main(["jobs", *warehouse]) == 0
    jobs = capsys.readouterr().out
    assert "ww-2/etl-1d" in jobs and "1d from 2026-05-03 (implicit)" in jobs
    args = ["tasks", "--meter", "ww-2", "--from", "2026-05-01T00:00", "--to", "2026-05-05T00:00"]
    assert main([*args, *warehouse]) == 0
    tasks = capsys.readouterr().out
    assert "2026-05-02 14:00" in tasks and "ingestion" in tasks and "100%" in tasks
    assert main(["status", *warehouse]) == 0
    status = capsys.readouterr().out
    assert status.count(" ok ") == 3 and "fleet: meters as of 2026-05-03 14:00 UTC" in status


def test_an_incident_opens_once_resolves_once_and_unsent_messages_wait(tmp_path):
    """Without a dispatch: conditions seen by consecutive runs make one incident."""
    from meterflow.warehouse import DuckDBWarehouse

    with DuckDBWarehouse(tmp_path / "wh.duckdb") as wh:
        wh.prepare()
        since = pd.Timestamp("2026-04-01 10:00")
        silent = alerts.Condition("acme", "meter_silent", "m1", since, "hq")
        scope = {("acme", "meter_silent")}
        notify = {"acme": "slack-webhook/acme"}
        for hour in (14, 15, 16):
            at = datetime(2026, 4, 1, hour, tzinfo=UTC)
            alerts.reconcile(wh, [silent], scope, notify, at)
        (opened,) = alerts.unsent(wh).to_dict("records")
        assert opened["opened_utc"] == pd.Timestamp("2026-04-01 14:00")
        alerts.mark_sent(wh, opened, datetime(2026, 4, 1, 14, 1, tzinfo=UTC))
        assert alerts.unsent(wh).empty
        alerts.reconcile(wh, [], {("other", "meter_silent")}, notify, datetime.now(UTC))
        assert alerts.unsent(wh).empty  # another participant's scope resolves nothing here
        alerts.reconcile(wh, [], scope, notify, datetime(2026, 4, 1, 17, tzinfo=UTC))
        (resolved,) = alerts.unsent(wh).to_dict("records")
        assert resolved["resolved_utc"] == pd.Timestamp("2026-04-01 17:00")
        alerts.mark_sent(wh, resolved, datetime(2026, 4, 1, 17, 1, tzinfo=UTC))
        assert alerts.unsent(wh).empty
        again = alerts.reconcile(wh, [silent], scope, notify, datetime(2026, 4, 2, tzinfo=UTC))
        assert len(again) == 1 and len(wh.query("SELECT * FROM alert_incident")) == 2


def test_an_upgraded_warehouse_keeps_its_mrv_jobs_and_tasks(tmp_path):
    """Warehouses written before meter_job/meter_task had mrv_job/mrv_task: prepare moves them."""
    path = str(tmp_path / "old.duckdb")
    with duckdb.connect(path) as con:
        con.execute(
            "CREATE TABLE mrv_job (participant_id VARCHAR, job_id VARCHAR, meter_id VARCHAR, "
            "device_id VARCHAR, type VARCHAR, start_date DATE, end_date DATE, interval VARCHAR, "
            "guardian_block VARCHAR, settings VARCHAR, last_task_id VARCHAR, "
            "PRIMARY KEY (participant_id, job_id))"
        )
        con.execute(
            "CREATE TABLE mrv_task (task_id VARCHAR PRIMARY KEY, participant_id VARCHAR, "
            "job_id VARCHAR, type VARCHAR, period_start_utc TIMESTAMP, status VARCHAR, "
            "retry_count INTEGER, errors VARCHAR, record_id VARCHAR, updated_utc TIMESTAMP)"
        )
        task = "main/mrv-1d-20260401@2026-04-01T13:00Z"
        con.execute(
            "INSERT INTO mrv_job VALUES ('acme', 'main/mrv-1d-20260401', 'main', 'D1', 'mrv', "
            "DATE '2026-04-01', NULL, '1d', 'acme-guardian', '{}', ?)",
            [task],
        )
        errors = json.dumps([{"at": "2026-04-03T00:00:00+00:00", "error": "Guardian is down"}])
        con.execute(
            "INSERT INTO mrv_task VALUES (?, 'acme', 'main/mrv-1d-20260401', 'mrv', "
            "TIMESTAMP '2026-04-01 13:00', 'verified', 1, ?, 'r1', TIMESTAMP '2026-04-03 00:00')",
            [task, errors],
        )
    from meterflow.jobs.store import job_overview, task_history
    from meterflow.warehouse import DuckDBWarehouse

    with DuckDBWarehouse(path) as wh:
        wh.prepare()
        (job,) = job_overview(wh, "acme").to_dict("records")
        (moved,) = task_history(
            wh, "main", datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 4, 3, tzinfo=UTC)
        ).to_dict("records")
        left = wh.query("SELECT table_name FROM information_schema.tables")["table_name"]
    assert (job["job_id"], job["frequency"], job["last_task_id"]) == (
        "main/mrv-1d-20260401",
        "1d",
        task,
    )
    assert (moved["stage"], moved["status"], moved["retry_count"]) == (
        "verification",
        "verified",
        1,
    )
    assert json.loads(moved["errors"])[0]["message"] == "Guardian is down"
    assert not {"mrv_job", "mrv_task"} & set(left)


def test_a_crashed_dispatch_run_is_told_by_the_installed_prefect_automation(fleet):
    """What only Prefect sees (the dispatcher's own run crashing) goes through its automations."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    from flows.automations import CRASHED, NOT_FINISHING

    _, receiver, _ = fleet
    install = ["alerts", "install", "--notify", "custom-webhook/fleet-ops", "--quiet-hours", "2"]
    assert main(install) == 0
    assert main(install) == 0  # replaced, not doubled
    with get_client(sync_client=True) as client:
        names = sorted(a.name for a in client.read_automations())
        assert names == sorted([CRASHED, NOT_FINISHING])
        run = client.create_flow_run(dispatch, name="dispatch/crash-test")
        client.set_flow_run_state(run.id, Crashed(message="worker lost"), force=True)
    deadline = time.monotonic() + 60
    while not receiver.received() and time.monotonic() < deadline:
        time.sleep(0.5)
    (told,) = receiver.received()
    assert told["subject"] == "[meterflow] dispatch dispatch/crash-test Crashed"
    assert "worker lost" in told["body"]


def test_health_states_from_runs_and_data():
    """failing after 3 failed runs in a row (and back to ok after one success), quarantined and
    deferred kept while no run touches the meter, late then silent as its data ages."""
    meters = pd.DataFrame(
        {
            "participant_id": ["p"],
            "meter_id": ["m"],
            "property_id": ["site"],
            "latency": [2 * HOUR],
            "silent_after": [4 * HOUR],
        }
    )
    start = datetime(2026, 4, 1, 10, tzinfo=UTC)
    data = pd.DataFrame({"participant_id": ["p"], "meter_id": ["m"], "last_data_utc": [None]})
    before = pd.DataFrame(columns=health.COLUMNS)

    def run(status, hour, last_hour=9, error=None):
        nonlocal before
        data["last_data_utc"] = pd.Timestamp(2026, 4, 1, last_hour)
        runs = pd.DataFrame(
            {"participant_id": ["p"], "meter_id": ["m"], "status": [status], "error": [error]}
        )
        runs = runs if status else runs.iloc[0:0]
        before = health.evaluate(meters, data, runs, before, start + hour * HOUR)
        (row,) = before.to_dict("records")
        return row["state"], row["failed_runs"], row["last_error"]

    assert run("done", 0) == ("ok", 0, None)
    assert run("failed", 0, error="SourceRejected: 401") == ("ok", 1, "SourceRejected: 401")
    assert run("failed", 0, error="SourceRejected: 403")[:2] == ("ok", 2)
    assert run("failed", 0, error="SourceUnavailable: 503") == (
        "failing",
        3,
        "SourceUnavailable: 503",
    )
    assert run(None, 0) == ("failing", 3, "SourceUnavailable: 503")  # not touched: kept
    assert run("done", 0) == ("ok", 0, None)
    assert run("quarantined", 0)[0] == "quarantined"
    assert run(None, 0)[0] == "quarantined"  # its last input was refused
    assert run("deferred", 0)[0] == "deferred"
    assert run("done", 3)[0] == "late"  # 3 h behind its 2 h latency
    assert run("done", 5)[0] == "silent"  # 5 h > 4 h
    assert before["since_utc"].iloc[0] == pd.Timestamp(2026, 4, 1, 10)  # its data's end


def long_window_fleet():
    """Two participants, each with a meter whose daily job gives way to a monthly one and a
    meter with the implicit daily job, over a week across Sydney's DST end; their outcomes and
    their stored hours (every hour but 01:00-02:00 UTC each day, a reading missing)."""
    jobs = """        <job type="etl" start="2026-04-01" end="2026-04-06" interval="1d"/>
        <job type="etl" start="2026-04-06" interval="1mo"/>"""
    xml = config(jobs).replace(
        b"    </property>",
        b'      <meter id="sub" dataType="energy"><csv path="exports/sub/" kind="interval" '
        b'unit="kWh"/></meter>\n    </property>',
    )
    fleet = [load_participant(xml.replace(b'"acme"', f'"{p}"'.encode())) for p in PARTICIPANTS]
    window = HourWindow.parse("2026-03-31T13:00", "2026-04-07T13:00")
    outcomes = [
        MeterOutcome(p, m, start=window.start.isoformat(), end=window.end.isoformat())
        for p in PARTICIPANTS
        for m in ("main", "sub")
    ]
    stored = [
        {"participant_id": p, "meter_id": m, "data_type": "energy", "hour_utc": h,
         "value": 1.0, "unit": "kWh", "quality": "measured", "coverage": 1.0}
        for p in PARTICIPANTS
        for m in ("main", "sub")
        for h in window.hours()
        if h.hour != 1
    ]  # fmt: skip
    return fleet, window, outcomes, pd.DataFrame(stored)


@pytest.mark.parametrize("hours_read", [250_000, 100])
def test_a_long_window_gives_each_interval_its_task_and_its_stored_hours(
    tmp_path, monkeypatch, hours_read
):
    """Every local interval the window meets is one task, and each task counts the stored
    hours inside it, as an hour-by-hour reckoning does (read for all participants at once, or
    a participant at a time)."""
    monkeypatch.setattr("meterflow.jobs.etl.HOURS_READ", hours_read)
    fleet, window, outcomes, stored = long_window_fleet()
    now = window.end.replace(tzinfo=None)
    tasks = etl_executions(fleet, outcomes, {}, now, now)
    zone = "Australia/Sydney"
    expected = set()
    for hour in window.hours():
        local = pd.Timestamp(hour).tz_convert(zone)
        day = local.normalize().tz_convert("UTC").tz_localize(None)
        if local < pd.Timestamp("2026-04-06", tz=zone):
            expected.add(("main/etl-1d-20260401", day))
        else:
            month = pd.Timestamp("2026-04-01", tz=zone).tz_convert("UTC").tz_localize(None)
            expected.add(("main/etl-1mo-20260406", month))
        expected.add(("sub/etl-1d", day))
    for participant, mine in tasks.groupby("participant_id"):
        got = set(zip(mine["job_id"], mine["interval_start_utc"], strict=True))
        assert got == expected and len(mine) == len(expected) == 5 + 1 + 7, participant
    with DuckDBWarehouse(tmp_path / "w.duckdb").prepare() as wh:
        wh.upsert("fact_meter_hourly", stored)
        counted = with_hours(wh, tasks, now)
    for row in counted.itertuples():
        start = row.interval_start_utc.tz_localize("UTC")
        end = min(row.interval_end_utc.tz_localize("UTC"), window.end)
        inside = [h for h in window.hours() if start <= h < end and h.hour != 1]
        assert row.hours_produced == len(inside), (row.participant_id, row.task_id)
    assert len(counted) == 2 * 13


def test_tasks_recorded_a_participant_at_a_time_are_those_recorded_all_at_once(
    tmp_path, monkeypatch
):
    """A month's backfill of a large fleet records its tasks a few participants at a time
    (TASKS_AT_ONCE): the tasks, jobs, health and what the run shows are the same."""
    fleet, window, outcomes, stored = long_window_fleet()
    now = window.end.replace(tzinfo=None)
    found = {}
    for at_once in (25_000, 1):
        monkeypatch.setattr("meterflow.jobs.track.TASKS_AT_ONCE", at_once)
        monkeypatch.setattr("meterflow.jobs.track.TASK_ROWS", 5)
        with DuckDBWarehouse(tmp_path / f"{at_once}.duckdb").prepare() as wh:
            wh.upsert("fact_meter_hourly", stored)
            tracked = track(
                wh, PARTICIPANTS, fleet, outcomes, health_thresholds, now, now, window.end
            )
            tables = {
                table: wh.query(f"SELECT * FROM {table} ORDER BY ALL")
                for table in ("meter_task", "meter_job", "meter_health")
            }
        found[at_once] = tracked, tables
    (whole, whole_tables), (parts, part_tables) = found[25_000], found[1]
    assert len(whole_tables["meter_task"]) == 2 * 13
    assert whole.task_counts == parts.task_counts == {"done": 2 * 13}
    pd.testing.assert_frame_equal(whole.tasks, parts.tasks)
    assert len(parts.tasks) == 5
    for table, rows in whole_tables.items():
        pd.testing.assert_frame_equal(rows, part_tables[table], obj=table)
    assert len(whole_tables["meter_health"]) == 4
