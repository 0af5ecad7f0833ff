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


def left_by_an_earlier_version(path: str, *statements: str) -> None:
    """The warehouse as an earlier version left it: the statements run on it, and its schema
    version forgotten, so that the next prepare brings it up to date."""
    with duckdb.connect(path) as con:
        for statement in statements:
            con.execute(statement)
        con.execute("DELETE FROM meterflow_schema")


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


def test_a_warehouse_made_before_a_column_was_added_gets_it_and_keeps_its_rows(tmp_path):
    """Columns added to a table since (dim_calendar's closures) are added on prepare, before the
    views that read them are made; the rows already there stay."""
    path = str(tmp_path / "old.duckdb")
    with DuckDBWarehouse(path) as wh:
        wh.prepare()
        wh.execute(
            "INSERT INTO dim_calendar VALUES ('acme', 'hq', TIMESTAMP '2026-04-01 00:00', "
            "DATE '2026-04-01', 11, 2, FALSE, FALSE, NULL, TRUE, NULL, NULL)"
        )
    left_by_an_earlier_version(
        path,
        "DROP VIEW v_energy_hourly CASCADE",
        "ALTER TABLE dim_calendar DROP COLUMN closure_reason",
        "ALTER TABLE dim_calendar DROP COLUMN is_closed",
    )
    with DuckDBWarehouse(path) as wh:
        wh.prepare()
        rows = wh.query(
            "SELECT is_office_hours, is_closed IS NULL AS unknown, closure_reason FROM dim_calendar"
        )
        assert rows.values.tolist() == [[True, True, None]]
        assert wh.query("SELECT count(*) AS n FROM v_office_hours_monthly").n[0] == 0


def test_a_key_given_twice_in_one_load_is_refused_and_nothing_is_written(tmp_path):
    """DuckDB's fact tables hold no key index (it would be held in memory whole): the upsert
    refuses a repeated key itself, naming it, as a declared key would."""
    twice = pd.concat([meter_hours([1.0, 2.0]), meter_hours([3.0])], ignore_index=True)
    with DuckDBWarehouse(tmp_path / "w.duckdb").prepare() as wh:
        with pytest.raises(ValueError, match=r"fact_meter_hourly: key .*'m1'.* more than once"):
            wh.upsert("fact_meter_hourly", twice)
        assert wh.query("SELECT count(*) AS n FROM fact_meter_hourly").n[0] == 0


def test_fact_tables_made_with_a_key_index_are_rebuilt_without_it_keeping_their_rows(tmp_path):
    """A warehouse whose fact tables an earlier version made with a primary key: prepare
    rebuilds them without its index, every row kept, and upserts go on as before."""
    path = str(tmp_path / "old.duckdb")
    with DuckDBWarehouse(path) as wh:
        wh.prepare()
        wh.upsert("fact_meter_hourly", meter_hours([1.0, 2.0, np.nan]))
    left_by_an_earlier_version(
        path,
        "CREATE TABLE keyed AS SELECT * FROM fact_meter_hourly",
        "DROP TABLE fact_meter_hourly",
        "CREATE TABLE fact_meter_hourly (participant_id VARCHAR NOT NULL, meter_id VARCHAR "
        "NOT NULL, data_type VARCHAR NOT NULL, hour_utc TIMESTAMP NOT NULL, value DOUBLE, "
        "unit VARCHAR NOT NULL, quality VARCHAR NOT NULL, coverage DOUBLE NOT NULL, "
        "PRIMARY KEY (participant_id, meter_id, hour_utc))",
        "INSERT INTO fact_meter_hourly SELECT * FROM keyed",
        "DROP TABLE keyed",
    )
    with DuckDBWarehouse(path) as wh:
        wh.prepare()
        keys = wh.query(
            "SELECT table_name FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
        )["table_name"]
        assert not {"fact_meter_hourly", "fact_hourly", "dim_calendar"} & set(keys)
        assert {"dim_meter", "meter_task", "mrv_record"} <= set(keys)  # small tables keep theirs
        again = wh.upsert("fact_meter_hourly", meter_hours([1.0, 2.0, np.nan]))
        fixed = wh.upsert("fact_meter_hourly", meter_hours([1.0, 2.5, np.nan, 4.0]))
        rows = wh.query("SELECT value FROM fact_meter_hourly ORDER BY hour_utc")
    assert (again.inserted, again.updated, fixed.inserted, fixed.updated) == (0, 0, 1, 1)
    assert rows.value.tolist()[:2] == [1.0, 2.5] and len(rows) == 4
