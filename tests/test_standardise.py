"""Standardisation edge cases; every expected kWh is worked out by hand in the comments."""

from __future__ import annotations

import pandas as pd
import pytest

from connectors.csv import parse_csv
from meterflow.collection.collect import standardise_meter
from meterflow.common.errors import SourceDataError
from meterflow.configuration.config import CsvSettings, Meter
from meterflow.standardisation.readings import SourceReadings
from meterflow.standardisation.standardise import standardise


def utc(*stamps: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(stamps), utc=True))


def hours(frame: pd.DataFrame) -> dict[str, float]:
    return {
        h.strftime("%m-%d %H"): round(v, 6)
        for h, v in zip(frame.hour_utc, frame.value, strict=True)
    }


def csv_hourly(text: str, data_type: str = "energy", **settings) -> pd.DataFrame:
    """The production path: parse a CSV export, then standardise it for a configured meter."""
    meter = Meter(
        id="m", property_id="p", data_type=data_type, connector=CsvSettings(path="x/", **settings)
    )
    return standardise_meter([parse_csv(text.encode(), meter.connector)], meter)


def test_interval_energy_is_apportioned_by_overlap():
    # 30-minute intervals starting at :45 straddle hours: each hour gets half of two intervals.
    start = utc("2026-01-01T00:45Z", "2026-01-01T01:15Z", "2026-01-01T01:45Z")
    frame = pd.DataFrame(
        {
            "start": start,
            "end": start + pd.Timedelta("30min"),
            "value": [2.0, 4.0, 6.0],
            "quality": "measured",
        }
    )
    hourly = standardise(SourceReadings("interval", "kWh", frame), "energy")
    # 00h: half of 2 = 1 (covers 15 min); 01h: half of 2 + 4 + half of 6 = 1 + 4 + 3 = 8;
    # 02h: half of 6 = 3 (15 min).
    assert hours(hourly) == {"01-01 00": 1.0, "01-01 01": 8.0, "01-01 02": 3.0}
    assert hourly.coverage.tolist() == [0.25, 1.0, 0.25]
    assert set(hourly.unit) == {"kWh"}


def test_units_are_converted_at_the_edge():
    # 4 x 15 min of 250 Wh = 1 kWh; the register in MWh: 0.0015 MWh = 1.5 kWh.
    text = "timestamp,value\n" + "".join(
        f"2026-01-01T00:{m:02d}:00Z,250\n" for m in (0, 15, 30, 45)
    )
    assert hours(csv_hourly(text, kind="interval", unit="Wh")) == {"01-01 00": 1.0}
    reg = "timestamp,value\n2026-01-01T00:00Z,10.0000\n2026-01-01T01:00Z,10.0015\n"
    assert hours(csv_hourly(reg, kind="cumulative", unit="MWh")) == {"01-01 00": 1.5}


def test_interval_end_labels_shift_into_the_previous_hour():
    # Stamped at the end: 01:00 closes 00:30-01:00, so 1 + 2 kWh belong to hour 00.
    text = "timestamp,value\n2026-01-01T00:30Z,1\n2026-01-01T01:00Z,2\n2026-01-01T01:30Z,4\n"
    hourly = csv_hourly(text, kind="interval", unit="kWh", label="end", interval_minutes=30)
    assert hours(hourly) == {"01-01 00": 3.0, "01-01 01": 4.0}


def test_duplicates_keep_the_last_and_order_does_not_matter():
    # 00:30 appears twice (5 then 7: the correction wins); rows are shuffled.
    text = (
        "timestamp,value\n2026-01-01T01:00Z,3\n2026-01-01T00:30Z,5\n"
        "2026-01-01T00:00Z,1\n2026-01-01T00:30Z,7\n2026-01-01T01:30Z,4\n"
    )
    hourly = csv_hourly(text, kind="interval", unit="kWh", interval_minutes=30)
    assert hours(hourly) == {"01-01 00": 8.0, "01-01 01": 7.0}


def test_register_rollover_counts_across_the_wrap():
    # A 5-digit register (max 100000 kWh): 99998 -> 99999.5 -> (wraps) 2.5 -> 4.
    # Steps: 1.5, (100000 - 99999.5) + 2.5 = 3.0, 1.5.
    text = (
        "timestamp,value\n2026-01-01T00:00Z,99998\n2026-01-01T00:20Z,99999.5\n"
        "2026-01-01T00:40Z,2.5\n2026-01-01T01:00Z,4\n"
    )
    hourly = csv_hourly(text, kind="cumulative", unit="kWh", register_max=100000)
    assert hours(hourly) == {"01-01 00": 6.0}
    assert hourly.quality.tolist() == ["measured"]


def test_register_reset_counts_from_zero_and_is_flagged():
    # 500 -> 510 (10) -> reset, reads 3 (counted from zero: 3) -> 8 (5). Total 18, no negative.
    text = (
        "timestamp,value\n2026-01-01T00:00Z,500\n2026-01-01T00:30Z,510\n"
        "2026-01-01T01:00Z,3\n2026-01-01T01:30Z,8\n"
    )
    hourly = csv_hourly(text, kind="cumulative", unit="kWh")
    assert hours(hourly) == {"01-01 00": 13.0, "01-01 01": 5.0}
    assert hourly.quality.tolist() == ["estimated", "measured"]
    assert (hourly.value >= 0).all()


def test_register_noise_dip_adds_nothing_and_is_not_double_counted():
    # 1000 -> 1001 -> 999.5 (dip, within 10%: 0) -> 1002 (counts 1002 - 1001 = 1, not 2.5).
    text = (
        "timestamp,value\n2026-01-01T00:00Z,1000\n2026-01-01T00:20Z,1001\n"
        "2026-01-01T00:40Z,999.5\n2026-01-01T01:00Z,1002\n"
    )
    hourly = csv_hourly(text, kind="cumulative", unit="kWh")
    assert hours(hourly) == {"01-01 00": 2.0}


def test_register_gap_energy_is_spread_and_flagged_estimated():
    # Readings every 30 min, then silent from 01:00 to 04:00: the 12 kWh step covers 3 hours,
    # 4 kWh each, estimated; never 12 kWh in one hour.
    text = (
        "timestamp,value\n2026-01-01T00:00Z,0\n2026-01-01T00:30Z,1\n2026-01-01T01:00Z,2\n"
        "2026-01-01T04:00Z,14\n2026-01-01T04:30Z,15\n2026-01-01T05:00Z,16\n"
    )
    hourly = csv_hourly(text, kind="cumulative", unit="kWh")
    assert hours(hourly) == {
        "01-01 00": 2.0,
        "01-01 01": 4.0,
        "01-01 02": 4.0,
        "01-01 03": 4.0,
        "01-01 04": 2.0,
    }
    assert hourly.quality.tolist() == [
        "measured",
        "estimated",
        "estimated",
        "estimated",
        "measured",
    ]


def test_instantaneous_values_are_time_weighted():
    # 10 degC at 00:00 and 00:10, 40 degC at 00:20 and 01:00: trapezoids give
    # (10*10 + 25*10 + 40*40) / 60 = 32.5, where a plain mean of the samples would say 25.
    text = (
        "timestamp,value\n2026-01-01T00:00Z,10\n2026-01-01T00:10Z,10\n2026-01-01T00:20Z,40\n"
        "2026-01-01T01:00Z,40\n"
    )
    hourly = csv_hourly(text, "temperature", kind="instantaneous", unit="degC", max_gap_minutes=60)
    assert hours(hourly) == {"01-01 00": 32.5}
    # Unevenly spaced: 0 kW for 50 minutes, 6 kW for the last 10 -> 1 kWh, not mean(0, 0, 6) kWh.
    power = (
        "timestamp,value\n2026-01-01T00:00Z,0\n2026-01-01T00:49Z,0\n2026-01-01T00:50Z,6\n"
        "2026-01-01T01:00Z,6\n"
    )
    hourly = csv_hourly(power, kind="instantaneous", unit="kW", max_gap_minutes=60)
    assert hours(hourly) == {"01-01 00": pytest.approx(1.05)}  # plus the 00:49-00:50 ramp: 0.05


def test_instantaneous_silence_is_not_covered():
    # Samples every 15 min, then nothing for 2 hours: the silent hour has no reading at all.
    text = "timestamp,value\n" + "".join(
        f"2026-01-01T{t}Z,20\n"
        for t in (
            "00:00",
            "00:15",
            "00:30",
            "00:45",
            "01:00",
            "03:00",
            "03:15",
            "03:30",
            "03:45",
            "04:00",
        )
    )
    hourly = csv_hourly(text, "temperature", kind="instantaneous", unit="degC")
    assert hours(hourly) == {"01-01 00": 20.0, "01-01 03": 20.0}


@pytest.mark.parametrize(
    ("day", "expected_hours"),
    [("2026-04-05", 25), ("2026-10-04", 23)],  # Sydney: DST ends in April, starts in October
)
def test_dst_days_have_25_and_23_hours(day, expected_hours):
    # One kWh per 15 minutes in Sydney wall time, stamped at the end of each interval.
    local = pd.date_range(
        day,
        pd.Timestamp(day) + pd.Timedelta(days=1),
        freq="15min",
        tz="Australia/Sydney",
        inclusive="right",
    )
    text = "t,kwh\n" + "".join(f"{t:%Y-%m-%d %H:%M},1\n" for t in local.tz_localize(None))
    hourly = csv_hourly(
        text,
        kind="interval",
        unit="kWh",
        timestamp_column="t",
        timestamp_format="%Y-%m-%d %H:%M",
        timezone="Australia/Sydney",
        label="end",
        value_column="kwh",
        interval_minutes=15,
    )
    assert len(hourly) == expected_hours
    assert hourly.value.sum() == 4 * expected_hours
    assert (hourly.value == 4.0).all() and (hourly.coverage == 1.0).all()


def test_a_wall_time_that_does_not_exist_is_an_error_naming_the_zone_and_line():
    text = "t,v\n2026-10-04 01:30,1\n2026-10-04 02:30,1\n"  # 02:00 jumps to 03:00 in Sydney
    with pytest.raises(
        SourceDataError, match="2026-10-04 02:30 does not exist in Australia/Syd"
    ) as e:
        parse_csv(
            text.encode(),
            CsvSettings(
                path="x/",
                kind="interval",
                unit="kWh",
                timestamp_column="t",
                value_column="v",
                timezone="Australia/Sydney",
                interval_minutes=30,
            ),
        )
    assert e.value.line == 3
