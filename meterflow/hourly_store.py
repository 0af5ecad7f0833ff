"""Standardised hourly readings in storage: `standardised/<data_type>/<meter>/<yyyy-mm-dd>.parquet`.

Writes are upserts on the hour: a day file is rewritten only when a row actually changed, and
the changed rows are returned so that aggregation and loading redo exactly those hours.

Each stored hour also keeps its provenance, the meter-hour ledger: `fetch` (which collection
wrote it, and from which window key) and `made_with` (the meter configuration and connector
version it was standardised with). Provenance alone never counts as a change.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from meterflow.config import Meter
from meterflow.readings import HOURLY_COLUMNS, empty_hourly
from meterflow.storage import Storage


def standardised_key(meter: Meter, day: str) -> str:
    return f"standardised/{meter.data_type}/{meter.id}/{day}.parquet"


PROVENANCE_COLUMNS = ["fetch", "made_with"]


def read_hours(storage: Storage, meter: Meter, days: list[str]) -> pd.DataFrame:
    """The meter's stored hourly readings for the given UTC days."""
    return _read(storage, meter, days)[HOURLY_COLUMNS]


def read_ledger(storage: Storage, meter: Meter, days: list[str]) -> pd.DataFrame:
    """The meter's stored hours with their provenance: which fetch, which configuration."""
    return _read(storage, meter, days)


def _read(storage: Storage, meter: Meter, days: list[str]) -> pd.DataFrame:
    frames = [
        pd.read_parquet(io.BytesIO(storage.read(key)))
        for key in (standardised_key(meter, day) for day in days)
        if storage.exists(key)
    ]
    if not frames:
        return empty_hourly().assign(fetch=pd.Series([], dtype="str"), made_with="")
    # Files written before provenance was kept read with it empty.
    return pd.concat(frames, ignore_index=True).reindex(columns=HOURLY_COLUMNS + PROVENANCE_COLUMNS)


def upsert_hours(
    storage: Storage, meter: Meter, hourly: pd.DataFrame, fetch: str, made_with: str
) -> pd.DataFrame:
    """Merge `hourly` into the day files; return the rows that are new or different.

    Rewritten rows take `fetch` and `made_with` as their provenance.
    """
    changed = []
    days = hourly["hour_utc"].dt.strftime("%Y-%m-%d")
    for day, rows in hourly.groupby(days, sort=True):
        existing = _read(storage, meter, [day])
        fresh = _changed_rows(existing, rows)
        if fresh.empty:
            continue
        stamped = fresh.assign(fetch=fetch, made_with=made_with)
        merged = pd.concat([existing[~existing["hour_utc"].isin(fresh["hour_utc"])], stamped])
        merged = merged.sort_values("hour_utc").reset_index(drop=True)
        buffer = io.BytesIO()
        merged.to_parquet(buffer, index=False)
        storage.write(standardised_key(meter, day), buffer.getvalue())
        changed.append(fresh)
    if not changed:
        return empty_hourly()
    return pd.concat(changed, ignore_index=True)


def _changed_rows(existing: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    both = rows.merge(existing, on="hour_utc", how="left", suffixes=("", "_old"), indicator=True)
    new = both["_merge"] == "left_only"
    same = (
        _same_number(both["value"], both["value_old"])
        & _same_number(both["coverage"], both["coverage_old"])
        & (both["quality"] == both["quality_old"])
        & (both["unit"] == both["unit_old"])
    )
    return rows[(new | ~same).to_numpy()][HOURLY_COLUMNS]


def _same_number(a: pd.Series, b: pd.Series) -> pd.Series:
    x, y = a.to_numpy(dtype="float64"), b.to_numpy(dtype="float64")
    return pd.Series(np.isclose(x, y, rtol=1e-12, atol=1e-12, equal_nan=True), index=a.index)
