"""The analytics warehouse (DuckDB file by default): a star schema loaded by upserts.

Every load is a MERGE on the natural key in one transaction that touches only rows that are new
or different, so a rerun leaves the warehouse byte-for-byte the same and reports 0 changes.
Timestamps are stored as TIMESTAMP holding UTC (columns end in `_utc`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from meterflow.aggregate import PROPERTY_COLUMNS
from meterflow.config import Participant
from meterflow.timeutil import HourWindow

SCHEMA = """
CREATE TABLE IF NOT EXISTS dim_participant (
    participant_id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS dim_property (
    participant_id VARCHAR NOT NULL,
    property_id VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    timezone VARCHAR NOT NULL,
    country VARCHAR NOT NULL,
    region VARCHAR,
    floor_area_m2 DOUBLE NOT NULL,
    office_days VARCHAR,
    office_start VARCHAR,
    office_end VARCHAR,
    PRIMARY KEY (participant_id, property_id)
);
CREATE TABLE IF NOT EXISTS dim_meter (
    participant_id VARCHAR NOT NULL,
    meter_id VARCHAR NOT NULL,
    property_id VARCHAR NOT NULL,
    name VARCHAR,
    data_type VARCHAR NOT NULL,
    unit VARCHAR NOT NULL,
    connector_type VARCHAR NOT NULL,
    device_id VARCHAR,
    config_fingerprint VARCHAR NOT NULL,
    PRIMARY KEY (participant_id, meter_id)
);
CREATE TABLE IF NOT EXISTS fact_meter_hourly (
    participant_id VARCHAR NOT NULL,
    meter_id VARCHAR NOT NULL,
    data_type VARCHAR NOT NULL,
    hour_utc TIMESTAMP NOT NULL,
    value DOUBLE,
    unit VARCHAR NOT NULL,
    quality VARCHAR NOT NULL,
    coverage DOUBLE NOT NULL,
    PRIMARY KEY (participant_id, meter_id, hour_utc)
);
CREATE TABLE IF NOT EXISTS fact_hourly (
    participant_id VARCHAR NOT NULL,
    property_id VARCHAR NOT NULL,
    data_type VARCHAR NOT NULL,
    hour_utc TIMESTAMP NOT NULL,
    value DOUBLE,
    unit VARCHAR NOT NULL,
    quality VARCHAR NOT NULL,
    coverage DOUBLE NOT NULL,
    meters_reporting INTEGER NOT NULL,
    meters_expected INTEGER NOT NULL,
    PRIMARY KEY (participant_id, property_id, data_type, hour_utc)
);
"""

KEYS = {
    "dim_participant": ["participant_id"],
    "dim_property": ["participant_id", "property_id"],
    "dim_meter": ["participant_id", "meter_id"],
    "fact_meter_hourly": ["participant_id", "meter_id", "hour_utc"],
    "fact_hourly": ["participant_id", "property_id", "data_type", "hour_utc"],
}


@dataclass(frozen=True)
class LoadCounts:
    inserted: int = 0
    updated: int = 0

    def __add__(self, other: LoadCounts) -> LoadCounts:
        return LoadCounts(self.inserted + other.inserted, self.updated + other.updated)


def connect(path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) the warehouse file with its schema."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute(SCHEMA)
    return con


def upsert(con: duckdb.DuckDBPyConnection, table: str, rows: pd.DataFrame) -> LoadCounts:
    """MERGE `rows` into `table` on its natural key; only new or different rows are written."""
    if rows.empty:
        return LoadCounts()
    rows = rows.copy()
    for column in rows.columns:
        if isinstance(rows[column].dtype, pd.DatetimeTZDtype):
            rows[column] = rows[column].dt.tz_convert("UTC").dt.tz_localize(None)
    keys = KEYS[table]
    columns = list(rows.columns)
    on = " AND ".join(f"t.{k} = i.{k}" for k in keys)
    differs = " OR ".join(f"i.{c} IS DISTINCT FROM t.{c}" for c in columns if c not in keys)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys)
    con.register("incoming", rows)
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE pending AS SELECT i.*, t.{keys[0]} IS NULL AS is_new "
            f"FROM incoming i LEFT JOIN {table} t ON {on} WHERE t.{keys[0]} IS NULL OR {differs}"
        )
        inserted, updated = con.execute(
            "SELECT count(*) FILTER (WHERE is_new), count(*) FILTER (WHERE NOT is_new) FROM pending"
        ).fetchone()
        con.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM pending "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("incoming")
    return LoadCounts(inserted, updated)


def load_configuration(con: duckdb.DuckDBPyConnection, participant: Participant) -> LoadCounts:
    """The participant, its properties and meters as dimension rows."""
    properties = pd.DataFrame(
        [
            {
                "participant_id": participant.id,
                "property_id": p.id,
                "name": p.name,
                "timezone": p.timezone,
                "country": p.country,
                "region": p.region,
                "floor_area_m2": p.floor_area_m2,
                "office_days": " ".join(p.office_hours.days) if p.office_hours else None,
                "office_start": p.office_hours.start if p.office_hours else None,
                "office_end": p.office_hours.end if p.office_hours else None,
            }
            for p in participant.properties
        ]
    )
    meters = pd.DataFrame(
        [
            {
                "participant_id": participant.id,
                "meter_id": m.id,
                "property_id": m.property_id,
                "name": m.name,
                "data_type": m.data_type,
                "unit": m.unit,
                "connector_type": m.connector.type,
                "device_id": m.device_id,
                "config_fingerprint": m.fingerprint,
            }
            for m in participant.meters
        ]
    )
    dim_participant = pd.DataFrame([{"participant_id": participant.id, "name": participant.name}])
    return (
        upsert(con, "dim_participant", dim_participant)
        + upsert(con, "dim_property", properties)
        + upsert(con, "dim_meter", meters)
    )


def load_meter_hours(
    con: duckdb.DuckDBPyConnection, participant: Participant, changed: dict[str, pd.DataFrame]
) -> LoadCounts:
    frames = [
        rows.assign(
            participant_id=participant.id,
            meter_id=meter_id,
            data_type=participant.meter(meter_id).data_type,
        )
        for meter_id, rows in changed.items()
        if not rows.empty
    ]
    if not frames:
        return LoadCounts()
    return upsert(con, "fact_meter_hourly", pd.concat(frames, ignore_index=True))


def load_property_hours(
    con: duckdb.DuckDBPyConnection, participant_id: str, rows: pd.DataFrame
) -> LoadCounts:
    return upsert(con, "fact_hourly", rows[PROPERTY_COLUMNS].assign(participant_id=participant_id))


def property_summary(con: duckdb.DuckDBPyConnection, window: HourWindow) -> pd.DataFrame:
    """Per property over [start, end): hours loaded, kWh, mean coverage, share measured."""
    return con.execute(
        """
        SELECT f.participant_id AS participant, f.property_id AS property, p.timezone,
               count(DISTINCT f.hour_utc) AS hours,
               round(sum(f.value) FILTER (WHERE f.data_type = 'energy'), 1) AS energy_kwh,
               round(sum(f.value) FILTER (WHERE f.data_type = 'solar'), 1) AS solar_kwh,
               round(avg(f.value) FILTER (WHERE f.data_type = 'outdoor_temperature'), 1)
                   AS outside_c,
               round(avg(f.coverage) FILTER (WHERE f.data_type = 'energy'), 3) AS coverage,
               round(avg(CASE WHEN f.quality = 'measured' THEN 1 ELSE 0 END)
                     FILTER (WHERE f.data_type = 'energy'), 3) AS measured_share
        FROM fact_hourly f JOIN dim_property p USING (participant_id, property_id)
        WHERE f.hour_utc >= ? AND f.hour_utc < ?
        GROUP BY ALL ORDER BY participant, property
        """,
        [window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)],
    ).df()
