"""Standardised hourly readings in storage: one file per data type and UTC day holding every
meter's hours, `standardised/<data_type>/<yyyy-mm-dd>.parquet`.

Each row is one meter-hour with its ledger: `fetch` (which collection wrote it, and from which
window key) and `made_with` (the meter configuration and connector version it was standardised
with). Writes are upserts on (meter, hour): a day file is rewritten only when a row actually
changed (provenance alone never counts), and the changed rows are returned, so aggregation and
loading redo exactly those hours. One dispatch touches O(data types x days) files, whatever the
number of meters; the flow that ran the collection is the one writer of these files.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from meterflow.common.frames import from_arrow, to_arrow
from meterflow.common.storage import Storage
from meterflow.configuration.config import Meter
from meterflow.standardisation.readings import HOURLY_COLUMNS, empty_hourly

PROVENANCE_COLUMNS = ["fetch", "made_with"]
DAY_COLUMNS = ["meter_id", *HOURLY_COLUMNS, *PROVENANCE_COLUMNS]
DAY_SCHEMA = pa.schema(
    [
        ("meter_id", pa.string()),
        ("hour_utc", pa.timestamp("us", tz="UTC")),
        ("value", pa.float64()),
        ("unit", pa.string()),
        ("quality", pa.string()),
        ("coverage", pa.float64()),
        ("fetch", pa.string()),
        ("made_with", pa.string()),
    ]
)
_EMPTY_DAY = from_arrow(DAY_SCHEMA.empty_table())  # built once: from_arrow costs milliseconds


def day_key(data_type: str, day: str) -> str:
    return f"standardised/{data_type}/{day}.parquet"


def empty_day() -> pd.DataFrame:
    return _EMPTY_DAY.copy()


def read_day(
    storage: Storage, data_type: str, day: str, columns: list[str] | None = None
) -> pd.DataFrame:
    """Every meter's stored hours of one data type and UTC day (empty if none): all their
    columns, or `columns`."""
    key = day_key(data_type, day)
    if not storage.exists(key):
        return empty_day()[columns or DAY_COLUMNS]
    return from_arrow(pq.read_table(io.BytesIO(storage.read(key)), columns=columns))


def read_days(
    storage: Storage, data_type: str, days: list[str], columns: list[str] | None = None
) -> pd.DataFrame:
    frames = [read_day(storage, data_type, day, columns) for day in days]
    if frames:
        return pd.concat(frames, ignore_index=True)
    return empty_day()[columns or DAY_COLUMNS]


def read_hours(storage: Storage, meter: Meter, days: list[str]) -> pd.DataFrame:
    """The meter's stored hourly readings for the given UTC days."""
    return read_ledger(storage, meter, days)[HOURLY_COLUMNS]


def read_ledger(storage: Storage, meter: Meter, days: list[str]) -> pd.DataFrame:
    """The meter's stored hours with their provenance: which fetch, which configuration."""
    rows = read_days(storage, meter.data_type, days)
    mine = rows[rows["meter_id"] == meter.id].drop(columns="meter_id")
    if mine.empty:
        return empty_hourly().assign(fetch=pd.Series([], dtype="str"), made_with="")
    return mine.sort_values("hour_utc").reset_index(drop=True)


def write_day(storage: Storage, data_type: str, day: str, rows: pd.DataFrame) -> None:
    table = to_arrow(rows[DAY_COLUMNS].sort_values(["meter_id", "hour_utc"]), DAY_SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    storage.write(day_key(data_type, day), buffer.getvalue())


def upsert_day(
    storage: Storage, data_type: str, day: str, fresh: pd.DataFrame, existing: pd.DataFrame
) -> pd.DataFrame:
    """Merge `fresh` rows (meter_id, hourly columns, fetch, made_with) into the day's `existing`
    rows; write the file if anything changed; return the new or different rows."""
    changed = changed_rows(existing, fresh)
    if changed.empty:
        return changed
    if existing.empty:
        write_day(storage, data_type, day, changed)
        return changed
    key = ["meter_id", "hour_utc"]
    kept = existing.merge(changed[key], on=key, how="left", indicator=True)
    kept = kept[kept["_merge"] == "left_only"].drop(columns="_merge")
    write_day(storage, data_type, day, pd.concat([kept, changed], ignore_index=True))
    return changed


def changed_rows(existing: pd.DataFrame, fresh: pd.DataFrame) -> pd.DataFrame:
    """The rows of `fresh` that are new or differ from `existing` in value, unit, quality or
    coverage (rows are keyed by meter and hour)."""
    if existing.empty:
        return fresh.reset_index(drop=True)
    key = ["meter_id", "hour_utc"]
    both = fresh.merge(existing, on=key, how="left", suffixes=("", "_old"), indicator=True)
    new = both["_merge"] == "left_only"
    same = (
        _same_number(both["value"], both["value_old"])
        & _same_number(both["coverage"], both["coverage_old"])
        & (both["quality"] == both["quality_old"])
        & (both["unit"] == both["unit_old"])
    )
    return fresh[(new | ~same).to_numpy()].reset_index(drop=True)


def _same_number(a: pd.Series, b: pd.Series) -> pd.Series:
    x, y = a.to_numpy(dtype="float64"), b.to_numpy(dtype="float64")
    return pd.Series(np.isclose(x, y, rtol=1e-12, atol=1e-12, equal_nan=True), index=a.index)
