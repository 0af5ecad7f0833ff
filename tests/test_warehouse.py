"""Warehouse loads are upserts: a rerun leaves the same rows and reports no change."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from meterflow.warehouse import DuckDBWarehouse


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
    with DuckDBWarehouse(tmp_path / "w.duckdb").prepare() as wh:
        first = wh.upsert("fact_meter_hourly", meter_hours([1.0, 2.0, np.nan]))
        again = wh.upsert("fact_meter_hourly", meter_hours([1.0, 2.0, np.nan]))
        fixed = wh.upsert("fact_meter_hourly", meter_hours([1.0, 2.5, np.nan, 4.0]))
        rows = wh.query("SELECT hour_utc, value FROM fact_meter_hourly ORDER BY hour_utc")
    assert (first.inserted, first.updated) == (3, 0)
    assert (again.inserted, again.updated) == (0, 0)
    assert (fixed.inserted, fixed.updated) == (1, 1)
    assert rows.value.tolist()[:2] == [1.0, 2.5] and len(rows) == 4
    assert pd.isna(rows.value[2])  # missing is NULL, not NaN
    assert str(rows.hour_utc[0]) == "2026-04-01 00:00:00"  # UTC, as the column name says


def test_a_failed_load_leaves_nothing_behind(tmp_path):
    bad = meter_hours([1.0, 2.0]).assign(quality=[None, "measured"])  # NOT NULL violated
    with DuckDBWarehouse(tmp_path / "w.duckdb").prepare() as wh:
        with pytest.raises(duckdb.ConstraintException):
            wh.upsert("fact_meter_hourly", bad)
        assert wh.query("SELECT count(*) AS n FROM fact_meter_hourly").n[0] == 0
