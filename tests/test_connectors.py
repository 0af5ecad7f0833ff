"""Each connector on real files: Ausgrid CSV, AEMO NEM12 samples, pushed files."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from connectors.csv import parse_csv
from connectors.nem12 import parse_nem12
from connectors.push import parse_push
from meterflow.collection.collect import standardise_meter
from meterflow.common.errors import SourceDataError
from meterflow.configuration.config import CsvFormat, CsvSettings, Meter, Nem12Settings

ROOT = Path(__file__).resolve().parent.parent
METERFLOW = ROOT / ".venv" / "bin" / "meterflow"
AUSGRID = CsvSettings(
    path="exports/",
    kind="interval",
    unit="kWh",
    timestamp_column="column1",
    timestamp_format="%Y-%m-%d %H:%M:%S",
    timezone="+10:00",
    value_column="GC",
    interval_minutes=30,
)


def ausgrid_by_hand(path: Path, column: str, day: str) -> dict[int, float]:
    """Local standard-time hour -> sum of its two half-hours, read with the csv module."""
    totals: dict[int, float] = {}
    with path.open() as handle:
        for row in csv.DictReader(handle):
            stamp = row[""]
            if stamp.startswith(day):
                hour = int(stamp[11:13])
                totals[hour] = totals.get(hour, 0.0) + float(row[column])
    return totals


@pytest.mark.parametrize("column", ["GC", "GG"])
def test_ausgrid_customer_hourly_totals_match_the_file(shared_data, column):
    path = shared_data / "ausgrid" / "customer12_2011-2012.csv"
    meter = Meter(
        id="c12",
        property_id="home",
        data_type="energy",
        connector=AUSGRID.model_copy(update={"value_column": column}),
    )
    hourly = standardise_meter([parse_csv(path.read_bytes(), meter.connector)], meter)
    # 17,568 half hours (a leap year) are 8,784 hours, all complete.
    assert len(hourly) == 8784 and (hourly.coverage == 1).all()
    assert hourly.value.sum() == pytest.approx(pd.read_csv(path)[column].sum(), rel=1e-12)
    by_hand = ausgrid_by_hand(path, column, "2012-01-15")
    local = hourly.set_index(hourly.hour_utc.dt.tz_convert("+10:00"))
    day = local.loc["2012-01-15"]
    assert {t.hour: round(v, 9) for t, v in day.value.items()} == {
        h: round(v, 9) for h, v in by_hand.items()
    }


def test_standardise_command_prints_hourly_csv(shared_data):
    path = shared_data / "ausgrid" / "customer12_2011-2012.csv"
    out = subprocess.run(
        [
            METERFLOW,
            "standardise",
            "--kind",
            "interval",
            "--unit",
            "kWh",
            "--tz",
            "+10:00",
            "--timestamp-column",
            "column1",
            "--timestamp-format",
            "%Y-%m-%d %H:%M:%S",
            "--value-column",
            "GC",
            "--interval-minutes",
            "30",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = out.stdout.splitlines()
    assert lines[0] == "hour_utc,value,unit,quality,coverage"
    # 2011-07-01 00:00 and 00:30 local (+10:00) are 0.392 + 0.578 kWh, hour 2011-06-30T14Z.
    assert lines[1] == "2011-06-30T14:00:00Z,0.97,kWh,measured,1"
    assert len(lines) == 8785


def test_standardise_command_takes_a_meter_xml_snippet(tmp_path):
    export = tmp_path / "register.csv"
    export.write_text(
        "time,wh\n2026-01-01T00:00Z,1000\n2026-01-01T00:30Z,1600\n2026-01-01T01:00Z,2500\n"
    )
    snippet = (
        '<meter id="m" dataType="energy"><csv path="x/" kind="cumulative" unit="Wh" '
        'timestampColumn="time" valueColumn="wh"/></meter>'
    )
    out = subprocess.run(
        [METERFLOW, "standardise", "--meter-xml", snippet, str(export)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.splitlines()[1] == "2026-01-01T00:00:00Z,1.5,kWh,measured,1"


def nem12_file(shared_data: Path, number: int) -> bytes:
    return (shared_data / "nem12" / f"sample_0{number}.zip").read_bytes()


def nem12_by_hand(data: bytes, nmi: str, suffix: str) -> tuple[float, int]:
    """Sum and count of the register's 300-record values, read with the csv module."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        text = archive.read(archive.namelist()[0]).decode()
    total, count, selected, per_day = 0.0, 0, False, 48
    for record in csv.reader(io.StringIO(text)):
        if record[0] == "200":
            selected = record[1] == nmi and record[4] == suffix
            per_day = 1440 // int(record[8])
        elif record[0] == "300" and selected:
            values = [float(v) for v in record[2 : 2 + per_day]]
            total, count = total + sum(values), count + len(values)
    return total, count


@pytest.mark.parametrize(
    ("number", "nmi", "suffix", "minutes"),
    [
        (1, "NEM1201002", "E1", 30),
        (1, "NEM1201002", "E2", 30),
        (2, "NEM1202022", "B1", 30),
        (3, "NEM1203042", "E1", 30),
        (4, "NEM1204062", "E1", 30),
        (5, "NEM1205082", "E1", 15),
        (6, "NEM1206102", "E1", 30),
    ],
)
def test_nem12_samples_keep_every_interval_of_the_register(
    shared_data, number, nmi, suffix, minutes
):
    data = nem12_file(shared_data, number)
    readings = parse_nem12(data, nmi, suffix)
    total, count = nem12_by_hand(data, nmi, suffix)
    assert len(readings) == count
    assert readings.frame.value.sum() == pytest.approx(total, rel=1e-12)
    lengths = (readings.frame.end - readings.frame.start).unique()
    assert set(lengths) <= {pd.Timedelta(minutes=minutes), pd.Timedelta(minutes=30)}
    meter = Meter(
        id="m",
        property_id="p",
        data_type="energy",
        connector=Nem12Settings(path="n/", nmi=nmi, suffix=suffix),
    )
    hourly = standardise_meter([readings], meter)
    assert hourly.value.sum() == pytest.approx(total, rel=1e-9)


def test_nem12_times_are_nem_time_and_400_events_set_quality(shared_data):
    # sample_04: day 2004-05-27 has quality V with 400 events F52 (intervals 1-10) and E52.
    readings = parse_nem12(nem12_file(shared_data, 4), "NEM1204062", "E1").frame
    first = readings.iloc[0]
    assert first.start == pd.Timestamp("2004-05-26T14:00Z")  # 00:00 NEM time (UTC+10)
    day = readings[readings.start < pd.Timestamp("2004-05-27T14:00Z")]
    assert (day.quality == "estimated").all()
    # sample_03: 400 records mark intervals 1-6 and 8-48 actual, 7 actual with reason 89.
    readings = parse_nem12(nem12_file(shared_data, 3), "NEM1203042", "E1").frame
    assert set(readings.quality) == {"measured"}


def test_nem12_register_missing_from_file_gives_no_readings(shared_data):
    assert len(parse_nem12(nem12_file(shared_data, 1), "NEM9999999", "E1")) == 0


def test_nem12_errors_name_the_line():
    text = b"100,NEM12,200505181432,A,B\n200,NEM1201002,E1,E1,E1,N1,1,KWH,30,\n300,20050315,1,2\n"
    with pytest.raises(SourceDataError) as caught:
        parse_nem12(text, "NEM1201002", "E1")
    assert caught.value.line == 3 and "48 values" in str(caught.value)


def push_meter_hours(body: bytes, name: str) -> pd.DataFrame:
    return parse_push(body, name, "solar").frame


def test_push_accepts_csv_and_json():
    csv_body = b"hour_utc,value,unit,quality\n2026-04-01T00:00:00Z,1500,Wh,estimated\n"
    frame = push_meter_hours(csv_body, "a.csv")
    assert frame.quality.tolist() == ["estimated"] and frame.coverage.tolist() == [1.0]
    body = json.dumps(
        {
            "readings": [
                {"hour_utc": "2026-04-01T10:00:00+10:00", "value": 2.5, "unit": "kWh"},
                {
                    "hour_utc": "2026-04-01T01:00:00Z",
                    "value": None,
                    "unit": "kWh",
                    "quality": "missing",
                },
            ]
        }
    ).encode()
    frame = push_meter_hours(body, "b.json")
    assert frame.hour_utc.tolist() == [
        pd.Timestamp("2026-04-01T00:00Z"),
        pd.Timestamp("2026-04-01T01:00Z"),
    ]
    assert frame.coverage.tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    ("body", "name", "message"),
    [
        (
            b"hour_utc,value,unit\n2026-04-01T00:00:00Z,1,kWh\n2026-04-01 01:00,1,kWh\n",
            "a.csv",
            "line 3: hour_utc must be an ISO 8601 time with Z or an offset",
        ),
        (
            b"hour_utc,value,unit\n2026-04-01T00:30:00Z,1,kWh\n",
            "a.csv",
            "line 2: hour_utc must be the start of an hour",
        ),
        (
            b"hour_utc,value,unit\n2026-04-01T00:00:00Z,lots,kWh\n",
            "a.csv",
            "line 2: value is not a number",
        ),
        (
            b"hour_utc,value,unit\n2026-04-01T00:00:00Z,1,degC\n",
            "a.csv",
            "unit degC cannot feed data type solar",
        ),
        (
            b"hour_utc,value,unit\n2026-04-01T00:00:00Z,1,kWh\n2026-04-01T00:00:00Z,2,kWh\n",
            "a.csv",
            "line 2: conflicting values for one hour",
        ),
        (
            b'{"readings": [{"hour_utc": "2026-04-01T00:00:00Z", "unit": "kWh"}]}',
            "a.json",
            "missing column(s) value",
        ),
        (b"hour_utc,value\n", "a.txt", "pushed files must end in .csv or .json"),
    ],
)
def test_push_rejections_say_why(body, name, message):
    with pytest.raises(SourceDataError) as caught:
        push_meter_hours(body, name)
    line, _, reason = message.partition(": ") if message.startswith("line") else ("", "", message)
    assert caught.value.reason == reason
    assert caught.value.line == (int(line.split()[1]) if line else None)


@pytest.mark.parametrize("cell", ["", "NaN", "nan", "NA", "N/A", "null", "None"])
def test_a_csv_cell_saying_nan_is_missing_like_an_empty_one(cell):
    body = f"timestamp,value\n2026-04-01T00:00Z,1\n2026-04-01T00:30Z,{cell}\n2026-04-01T01:00Z,2\n"
    readings = parse_csv(body.encode(), CsvFormat(kind="interval", unit="kWh", interval_minutes=30))
    assert readings.frame.quality.tolist() == ["measured", "missing", "measured"]
    assert readings.frame.line.tolist() == [2, 3, 4]
