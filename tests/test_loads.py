"""Loads of many participants together: the same rows as each loaded alone, and a participant
whose stored hours cannot be read fails alone."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pandas as pd

from connectors import connector_for
from meterflow.collection.catalog import read_catalog
from meterflow.collection.collect import collect_meter
from meterflow.common.storage import LocalStorage
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.participant_xml import load_participant
from meterflow.warehouse import DuckDBWarehouse
from meterflow.warehouse.loads import Pending, load_pending

CONFIG = """<participant id="{pid}" name="{pid}">
  <properties>
    <property id="hq" name="HQ" timezone="Australia/Sydney" country="AU" floorArea="100">
      <meter id="{pid}-main" dataType="energy">
        <csv path="exports/main/" kind="interval" unit="kWh" intervalMinutes="30"/>
      </meter>
    </property>
  </properties>
</participant>"""
WINDOW = HourWindow.parse("2026-04-01T00:00", "2026-04-01T04:00")
NOW = datetime(2026, 4, 2, tzinfo=UTC)
TABLES = ["fact_meter_hourly", "fact_hourly", "dim_calendar", "dim_meter", "load_log"]


def stored(data_root, pid: str, scale: float) -> Pending:
    """A participant with four hours collected and merged (nothing loaded yet)."""
    storage = LocalStorage(data_root, pid)
    participant = load_participant(CONFIG.format(pid=pid).encode())
    stamps = pd.date_range("2026-04-01T00:00Z", periods=8, freq="30min")
    rows = "".join(f"{t:%Y-%m-%dT%H:%M:%SZ},{scale * (i + 1)}\n" for i, t in enumerate(stamps))
    storage.write("exports/main/day1.csv", ("timestamp,value\n" + rows).encode())
    meter = participant.meter(f"{pid}-main")
    collect_meter(storage, participant, meter, connector_for(meter, pid), WINDOW, now=NOW)
    return Pending(storage, participant, read_catalog(storage).runs)


# Columns stamped with the time of the load, which differs between the two warehouses.
STAMPED = {"dim_meter": " EXCLUDE (valid_from)", "load_log": " EXCLUDE (loaded_utc)"}


def rows_of(path) -> dict[str, list]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {
            t: sorted(con.execute(f"SELECT *{STAMPED.get(t, '')} FROM {t}").fetchall())
            for t in TABLES
        }


def test_participants_loaded_together_hold_the_rows_each_loaded_alone_would(tmp_path):
    pending = [stored(tmp_path / "data", pid, s) for pid, s in (("acme", 1.0), ("initech", 2.0))]
    with DuckDBWarehouse(tmp_path / "together.duckdb") as wh:
        spans, failed = load_pending(wh, pending, NOW)
    assert failed == {} and spans == {"acme": [WINDOW], "initech": [WINDOW]}
    for one in pending:
        with DuckDBWarehouse(tmp_path / "alone.duckdb") as wh:
            load_pending(wh, [one], NOW)
    together, alone = rows_of(tmp_path / "together.duckdb"), rows_of(tmp_path / "alone.duckdb")
    assert together == alone
    assert len(together["fact_meter_hourly"]) == 8 and len(together["load_log"]) == 2
    with DuckDBWarehouse(tmp_path / "together.duckdb") as wh:
        assert load_pending(wh, pending, NOW) == ({"acme": [], "initech": []}, {})
    assert rows_of(tmp_path / "together.duckdb") == together  # a rerun changes no row


def test_a_participant_whose_day_file_cannot_be_read_fails_alone(tmp_path):
    acme, initech = (stored(tmp_path / "data", pid, 1.0) for pid in ("acme", "initech"))
    initech.storage.write("standardised/energy/2026-04-01.parquet", b"not parquet")
    with DuckDBWarehouse(tmp_path / "wh.duckdb") as wh:
        spans, failed = load_pending(wh, [acme, initech], NOW)
    assert spans == {"acme": [WINDOW]} and list(failed) == ["initech"]
    loaded = rows_of(tmp_path / "wh.duckdb")
    assert {r[0] for r in loaded["load_log"]} == {"acme"}  # initech's runs load next time
    assert len(loaded["fact_meter_hourly"]) == 4
