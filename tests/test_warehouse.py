"""Warehouse loads are upserts: a rerun leaves the same rows and reports no change."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from meterflow import warehouse


def meter_hours(values) -> pd.DataFrame:
    hours = pd.date_range("2026-04-01T00:00Z", periods=len(values), freq="h")
    return pd.DataFrame(
        {
            "participant_id": "acme",
            "meter_id": "m1",
            "data_type": "energy",
            "hour_utc": hours,
            "value": values,
            "unit": "kWh",
            "quality": "measured",
            "coverage": 1.0,
        }
    )


def test_upsert_inserts_then_changes_nothing_then_updates_only_what_differs(tmp_path):
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        first = warehouse.upsert(con, "fact_meter_hourly", meter_hours([1.0, 2.0, np.nan]))
        again = warehouse.upsert(con, "fact_meter_hourly", meter_hours([1.0, 2.0, np.nan]))
        fixed = warehouse.upsert(con, "fact_meter_hourly", meter_hours([1.0, 2.5, np.nan, 4.0]))
        rows = con.execute(
            "SELECT hour_utc, value FROM fact_meter_hourly ORDER BY hour_utc"
        ).fetchall()
    assert (first.inserted, first.updated) == (3, 0)
    assert (again.inserted, again.updated) == (0, 0)
    assert (fixed.inserted, fixed.updated) == (1, 1)
    assert [r[1] for r in rows][:2] == [1.0, 2.5] and len(rows) == 4
    assert str(rows[0][0]) == "2026-04-01 00:00:00"  # UTC, as the column name says


def test_a_failed_load_leaves_nothing_behind(tmp_path):
    bad = meter_hours([1.0, 2.0]).assign(quality=[None, "measured"])  # NOT NULL violated
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        with pytest.raises(duckdb.ConstraintException):
            warehouse.upsert(con, "fact_meter_hourly", bad)
        assert con.execute("SELECT count(*) FROM fact_meter_hourly").fetchone() == (0,)
