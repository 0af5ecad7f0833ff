"""Collecting meters: raw log kept as fetched, reruns change nothing, bad input is quarantined."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest

import meterflow.collection.collect as collecting
from connectors import connector_for
from meterflow.aggregation.aggregate import aggregate_changes
from meterflow.collection.catalog import archived
from meterflow.collection.collect import MeterWindow, collect_meter, window_key
from meterflow.collection.rawlog import object_key
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.participant_xml import load_participant
from meterflow.hours.hourly_store import read_hours, read_ledger

CONFIG = """<participant id="acme" name="Acme">
  <properties>
    <property id="hq" name="HQ" timezone="Australia/Sydney" country="AU" floorArea="100">
      <meter id="main" dataType="energy">
        <csv path="exports/main/" kind="interval" unit="kWh" intervalMinutes="30"/>
      </meter>
      <meter id="sub" dataType="energy">
        <csv path="exports/sub/" kind="cumulative" unit="kWh"/>
      </meter>
      <meter id="pv" dataType="solar"><push/></meter>
    </property>
  </properties>
</participant>"""
WINDOW = HourWindow.parse("2026-04-01T00:00", "2026-04-01T04:00")
NOW = datetime(2026, 4, 2, tzinfo=UTC)


@pytest.fixture
def participant():
    return load_participant(CONFIG.encode())


def collect(storage, participant, meter_id, now=NOW):
    meter = participant.meter(meter_id)
    connector = connector_for(meter, participant.id)
    return collect_meter(storage, participant, meter, connector, WINDOW, now=now)


def interval_export(values: list[float]) -> bytes:
    stamps = pd.date_range("2026-04-01T00:00Z", periods=len(values), freq="30min")
    rows = "".join(f"{t:%Y-%m-%dT%H:%M:%SZ},{v}\n" for t, v in zip(stamps, values, strict=True))
    return ("timestamp,value\n" + rows).encode()


def test_collect_archives_raw_and_writes_hourly(storage, participant):
    storage.write("exports/main/day1.csv", interval_export([1, 2, 3, 4, 5, 6, 7, 8]))
    result = collect(storage, participant, "main")
    assert (result.payloads_new, result.hours_new, result.hours_missing) == (1, 4, 0)
    (raw,) = archived(storage, "main")
    assert raw["data"] == interval_export([1, 2, 3, 4, 5, 6, 7, 8])  # as fetched
    assert raw["source"] == "acme:exports/main/day1.csv" and raw["status"] == "accepted"
    stored = read_hours(storage, participant.meter("main"), WINDOW.days())
    assert stored.value.tolist() == [3.0, 7.0, 11.0, 15.0]
    assert storage.list("standardised/energy/") == ["standardised/energy/2026-04-01.parquet"]


def test_rerun_changes_nothing(storage, participant):
    storage.write("exports/main/day1.csv", interval_export([1, 2, 3, 4, 5, 6, 7, 8]))
    collect(storage, participant, "main")
    before = {k: storage.read(k) for k in storage.list()}
    again = collect(storage, participant, "main", now=datetime(2026, 4, 3, tzinfo=UTC))
    assert (again.payloads_new, again.hours_new, again.hours_cached) == (0, 0, 4)
    assert {k: storage.read(k) for k in storage.list()} == before


def test_a_file_that_completes_an_hour_begun_by_an_earlier_one_adds_to_it(storage, participant):
    """A new interval file rewrites only the hours it touches, each from every archived file
    that touches it too: the second half of an hour, arriving a day later, completes it."""
    storage.write("exports/main/a.csv", b"timestamp,value\n2026-04-01T00:00:00Z,1\n")
    first = collect(storage, participant, "main")
    later = b"timestamp,value\n2026-04-01T00:30:00Z,2\n2026-04-01T01:00:00Z,4\n"
    storage.write("exports/main/b.csv", later)
    second = collect(storage, participant, "main", now=datetime(2026, 4, 3, tzinfo=UTC))
    assert first.changed[["value", "coverage"]].values.tolist() == [[1.0, 0.5]]
    assert second.changed.hour_utc.tolist() == list(WINDOW.hours()[:2])
    stored = read_hours(storage, participant.meter("main"), WINDOW.days())
    assert stored[["value", "coverage"]].values.tolist() == [[3.0, 1.0], [4.0, 0.5]]


def test_a_corrected_export_updates_only_the_hours_it_changes(storage, participant):
    storage.write("exports/main/day1.csv", interval_export([1, 2, 3, 4, 5, 6, 7, 8]))
    collect(storage, participant, "main")
    storage.write("exports/main/day1-corrected.csv", interval_export([1, 2, 3, 4, 5, 9, 7, 8]))
    result = collect(storage, participant, "main", now=datetime(2026, 4, 3, tzinfo=UTC))
    assert result.changed.hour_utc.tolist() == [pd.Timestamp("2026-04-01T02:00Z")]
    assert result.changed.value.tolist() == [14.0]
    # Both versions stay in the raw log.
    assert len(archived(storage, "main")) == 2


def test_registers_difference_across_file_borders(storage, participant):
    storage.write(
        "exports/sub/a.csv", b"timestamp,value\n2026-04-01T00:00Z,10\n2026-04-01T01:00Z,12\n"
    )
    collect(storage, participant, "sub")
    storage.write(
        "exports/sub/b.csv", b"timestamp,value\n2026-04-01T02:00Z,15\n2026-04-01T03:00Z,19\n"
    )
    collect(storage, participant, "sub", now=datetime(2026, 4, 3, tzinfo=UTC))
    stored = read_hours(storage, participant.meter("sub"), WINDOW.days())
    # 10 -> 12 -> (next file) 15 -> 19: hours 00, 01 and 02 get 2, 3 and 4 kWh.
    assert stored.value.tolist() == [2.0, 3.0, 4.0]


def test_a_bad_export_is_quarantined_with_its_line_and_the_rest_goes_through(storage, participant):
    storage.write("exports/main/good.csv", interval_export([1, 1, 1, 1]))
    storage.write(
        "exports/main/bad.csv",
        b"timestamp,value\n2026-04-01T02:00:00Z,12\n2026-04-01T02:30:00Z,twelve\n",
    )
    result = collect(storage, participant, "main")
    (reason,) = result.rejected
    assert reason == "acme/main, acme:exports/main/bad.csv:3: 'twelve' is not a number"
    assert result.hours_new == 2
    quarantined = storage.list("quarantine/main/")
    assert any(k.endswith("_bad.csv") for k in quarantined)
    reason_file = next(k for k in quarantined if k.endswith(".reason.json"))
    assert json.loads(storage.read(reason_file))["reason"] == reason
    assert storage.exists("exports/main/bad.csv")  # the participant's own file is left alone


def test_pushed_files_leave_the_inbox_and_late_data_reaggregates_its_hours(storage, participant):
    body = "hour_utc,value,unit\n" + "".join(
        f"2026-04-01T0{h}:00:00Z,{h + 1},kWh\n" for h in range(4)
    )
    storage.write("inbox/pv/day.csv", body.encode())
    storage.write("inbox/pv/broken.csv", b"hour_utc,value,unit\n2026-04-01 05:00,1,kWh\n")
    first = collect(storage, participant, "pv")
    assert first.hours_new == 4 and len(first.rejected) == 1
    assert storage.list("inbox/") == []
    assert len([k for k in storage.list("quarantine/pv/") if k.endswith("broken.csv")]) == 1

    # A correction for one past hour arrives later: exactly that property-hour is recomputed.
    storage.write(
        "inbox/pv/fix.json",
        json.dumps([{"hour_utc": "2026-04-01T01:00:00Z", "value": 9.5, "unit": "kWh"}]).encode(),
    )
    late = collect(storage, participant, "pv", now=datetime(2026, 4, 5, tzinfo=UTC))
    assert late.hours_new == 1
    rows = aggregate_changes(storage, participant, {"pv": late.changed})
    assert rows[["property_id", "data_type", "value"]].values.tolist() == [["hq", "solar", 9.5]]
    assert rows.hour_utc.tolist() == [pd.Timestamp("2026-04-01T01:00Z")]


def test_property_coverage_is_meters_reporting_over_meters_expected(storage, participant):
    storage.write("exports/main/day1.csv", interval_export([1, 1, 1, 1, 1, 1, 1, 1]))
    storage.write(
        "exports/sub/a.csv", b"timestamp,value\n2026-04-01T00:00Z,10\n2026-04-01T01:00Z,12\n"
    )
    changed = {m: collect(storage, participant, m).changed for m in ("main", "sub")}
    rows = aggregate_changes(storage, participant, changed).set_index("hour_utc")
    hour0, hour1 = pd.Timestamp("2026-04-01T00:00Z"), pd.Timestamp("2026-04-01T01:00Z")
    assert rows.loc[hour0, ["value", "coverage", "meters_reporting"]].tolist() == [4.0, 1.0, 2]
    assert rows.loc[hour1, ["value", "coverage", "meters_reporting"]].tolist() == [2.0, 0.5, 1]


def test_a_config_fix_restandardises_that_meter_only_from_its_archive(storage, participant):
    storage.write("exports/main/day1.csv", interval_export([1, 2, 3, 4, 5, 6, 7, 8]))
    storage.write(
        "exports/sub/a.csv", b"timestamp,value\n2026-04-01T00:00Z,10\n2026-04-01T01:00Z,12\n"
    )
    for meter_id in ("main", "sub"):
        collect(storage, participant, meter_id)
    # The export was in Wh all along: the participant fixes the unit in the XML.
    fixed_xml = CONFIG.replace('unit="kWh" intervalMinutes', 'unit="Wh" intervalMinutes')
    fixed = load_participant(fixed_xml.encode())
    later = datetime(2026, 4, 3, tzinfo=UTC)
    main = collect(storage, fixed, "main", now=later)
    sub = collect(storage, fixed, "sub", now=later)
    assert main.payloads_new == 0 and main.changed.value.tolist() == [0.003, 0.007, 0.011, 0.015]
    assert sub.hours_new == 0  # its configuration did not change
    again = collect(storage, fixed, "main", now=later)
    assert again.hours_new == 0  # and a rerun changes nothing


def test_every_stored_hour_says_which_fetch_and_configuration_made_it(storage, participant):
    storage.write("exports/main/day1.csv", interval_export([1, 2, 3, 4, 5, 6, 7, 8]))
    collect(storage, participant, "main")
    main = participant.meter("main")
    connector = connector_for(main, participant.id)
    key = window_key(participant, main, connector, WINDOW)
    ledger = read_ledger(storage, main, WINDOW.days())
    assert set(ledger["fetch"]) == {f"source@2026-04-02T00:00:00Z/{key}"}
    assert set(ledger["made_with"]) == {f"{main.fingerprint}/csv-{connector.version}"}
    # A later correction of one half-hour re-stamps only the hour it changed.
    storage.write("exports/main/day1-fix.csv", interval_export([1, 2, 3, 4, 5, 9, 7, 8]))
    collect(storage, participant, "main", now=datetime(2026, 4, 3, tzinfo=UTC))
    fetches = read_ledger(storage, main, WINDOW.days())["fetch"].str.split("/").str[0].tolist()
    assert fetches == ["source@2026-04-02T00:00:00Z"] * 2 + [
        "source@2026-04-03T00:00:00Z",
        fetches[0],
    ]


def test_force_override_false_on_a_finished_window_reads_and_writes_nothing(storage, participant):
    storage.write("exports/main/day1.csv", interval_export([1, 2, 3, 4, 5, 6, 7, 8]))
    collect(storage, participant, "main")
    before = {k: storage.read(k) for k in storage.list()}
    storage.write("exports/main/late.csv", interval_export([9] * 8))  # not looked at
    main = participant.meter("main")
    again = collect_meter(
        storage, participant, main, connector_for(main, participant.id), WINDOW, NOW, False
    )
    assert (again.payloads_new, again.hours_new, again.hours_cached) == (0, 0, 4)
    storage.delete("exports/main/late.csv")
    assert {k: storage.read(k) for k in storage.list()} == before


def test_submeters_are_kept_per_meter_but_not_added_to_the_property(storage):
    participant = load_participant(
        CONFIG.replace(
            '<meter id="sub" dataType="energy">',
            '<meter id="sub" dataType="energy" role="submeter">',
        ).encode()
    )
    storage.write("exports/main/day1.csv", interval_export([1, 1, 1, 1]))
    storage.write(
        "exports/sub/a.csv", b"timestamp,value\n2026-04-01T00:00Z,10\n2026-04-01T01:00Z,11\n"
    )
    changed = {m: collect(storage, participant, m).changed for m in ("main", "sub")}
    assert changed["sub"].value.tolist() == [1.0]  # the submeter's own hour is kept
    rows = aggregate_changes(storage, participant, changed).set_index("hour_utc")
    hour0 = pd.Timestamp("2026-04-01T00:00Z")
    assert rows.loc[hour0, ["value", "meters_reporting", "meters_expected"]].tolist() == [2.0, 1, 1]


def test_a_large_export_is_archived_as_an_object_of_its_own_and_read_back_from_it(
    storage, participant, monkeypatch
):
    """Above rawlog.LARGE (lowered here) the bytes are an object of their own, as fetched; the
    run object does not hold them, and restandardising from the archive reads them back."""
    monkeypatch.setattr("meterflow.collection.rawlog.LARGE", 100)
    export = interval_export([1, 2, 3, 4, 5, 6, 7, 8])
    storage.write("exports/main/day1.csv", export)
    assert collect(storage, participant, "main").payloads_new == 1
    (raw,) = archived(storage, participant.meter("main").id)
    key = object_key(raw["sha256"])
    assert storage.read(key) == export and raw["data"] == export
    (run,) = [k for k in storage.list("raw/") if k.endswith(".zip")]
    assert export not in storage.read(run)  # the run names it, it does not copy it
    fixed = load_participant(
        CONFIG.replace('unit="kWh" intervalMinutes', 'unit="Wh" intervalMinutes').encode()
    )
    main = collect(storage, fixed, "main", now=datetime(2026, 4, 3, tzinfo=UTC))
    assert main.payloads_new == 0 and main.changed.value.tolist() == [0.003, 0.007, 0.011, 0.015]
    assert storage.list("raw/objects/") == [key]  # written once


@pytest.mark.parametrize("merge_rows", [collecting.MERGE_ROWS, 1])
def test_a_meter_hour_two_unmerged_runs_give_is_stored_once_with_the_later_value(
    storage, participant, monkeypatch, merge_rows
):
    """A run a lost flow left unmerged and the run that collected the same hours again are
    merged together: one row per meter-hour, the later run's, however many rows the merge
    holds before it writes the days."""
    monkeypatch.setattr(collecting, "MERGE_ROWS", merge_rows)
    meter = participant.meter("main")
    planned = [MeterWindow("main", WINDOW, len(WINDOW.hours()))]
    runs = []
    for values, force in (([1, 2, 3, 4, 5, 6, 7, 8], None), ([1, 2, 3, 4, 5, 6, 7, 80], True)):
        storage.write("exports/main/day1.csv", interval_export(values))
        shard = collecting.collect_shard(
            storage, participant, planned, lambda m: connector_for(m, participant.id), NOW, force
        )
        runs.append(shard.run_key)
    collecting.merge(storage, participant, runs, NOW)
    hours = read_hours(storage, meter, ["2026-04-01"])
    assert hours["value"].tolist() == [3.0, 7.0, 11.0, 87.0]
    assert len(read_ledger(storage, meter, ["2026-04-01"])) == 4
