"""`push` (external connector): an outside system drops standardised hourly files in
`inbox/<meter>/` at any time. Valid files are archived and loaded; invalid ones are moved to
`quarantine/<meter>/` beside a reason file. Nothing is lost either way.

File schema (see docs/push.md): CSV with a header, or JSON.

    hour_utc,value,unit,quality,coverage
    2026-03-30T00:00:00Z,12.5,kWh,measured,1

    {"readings": [{"hour_utc": "2026-03-30T00:00:00Z", "value": 12.5, "unit": "kWh"}]}

`hour_utc` is the start of a whole hour with an explicit offset (Z or +hh:mm); `value` is a number
(empty, null or NaN only when quality is missing); one `unit` per file, convertible to the
meter's data type; `quality` (default measured) one of measured, estimated, interpolated,
missing; `coverage` (default 1) between 0 and 1.
"""

from __future__ import annotations

import io
import json
from typing import ClassVar

import numpy as np
import pandas as pd

from connectors.exports import FileConnector
from meterflow.common.errors import SourceDataError
from meterflow.configuration.config import Meter
from meterflow.standardisation.readings import (
    EARLIEST,
    LATEST,
    QUALITIES,
    SourceReadings,
    first_out_of_range,
    is_missing_text,
)
from meterflow.standardisation.units import ACCEPTED_QUANTITIES, quantity

REQUIRED = ("hour_utc", "value", "unit")


class PushConnector(FileConnector):
    type: ClassVar[str] = "push"
    consume: ClassVar[bool] = True

    def folder(self, meter: Meter) -> str:
        return f"inbox/{meter.id}/"

    def parse(self, data: bytes, name: str, meter: Meter) -> SourceReadings:
        return parse_push(data, name, meter.data_type)


def parse_push(data: bytes, name: str, data_type: str) -> SourceReadings:
    """Validate a pushed file completely; raise naming the first bad line (or JSON item)."""
    if name.lower().endswith(".json"):
        table, is_csv = _json_table(data), False
    elif name.lower().endswith(".csv"):
        table, is_csv = _csv_table(data), True
    else:
        raise SourceDataError("pushed files must end in .csv or .json")
    missing = [column for column in REQUIRED if column not in table.columns]
    if missing:
        raise SourceDataError(f"missing column(s) {', '.join(missing)}")
    if table.empty:
        raise SourceDataError("no readings")
    table = table.astype({column: "object" for column in table.columns})

    def fail(mask: pd.Series, message: str) -> None:
        if mask.any():
            at = int(table.index[mask.to_numpy().argmax()])
            if is_csv:
                raise SourceDataError(message, line=at)
            raise SourceDataError(f"readings[{at}]: {message}")

    hours = pd.to_datetime(
        table["hour_utc"].astype(str), format="ISO8601", errors="coerce", utc=True
    )
    stamp = table["hour_utc"].astype(str)
    naive = ~stamp.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True)
    fail(hours.isna() | naive, "hour_utc must be an ISO 8601 time with Z or an offset")
    outside = first_out_of_range(hours)
    fail(
        pd.Series(table.index == outside, index=table.index),
        f"hour_utc must be from {EARLIEST.year} to {LATEST.year} (found {stamp.get(outside)})",
    )
    fail(hours != hours.dt.floor("h"), "hour_utc must be the start of an hour")

    units = table["unit"].astype(str).unique()
    if len(units) != 1:
        raise SourceDataError(f"one unit per file, found {', '.join(sorted(units))}")
    unit = units[0]
    try:
        unit_quantity = quantity(unit)
    except ValueError as exc:
        raise SourceDataError(str(exc)) from None
    if unit_quantity not in ACCEPTED_QUANTITIES[data_type] - {"power"}:
        raise SourceDataError(f"unit {unit} cannot feed data type {data_type}")

    quality = table.get("quality", pd.Series("measured", index=table.index)).fillna("measured")
    quality = quality.astype(str).replace("", "measured")
    fail(~quality.isin(QUALITIES), f"quality must be one of {', '.join(QUALITIES)}")
    blank = table["value"].isna() | is_missing_text(table["value"].astype(str))
    values = pd.to_numeric(table["value"].where(~blank), errors="coerce")
    boolean = table["value"].map(lambda v: isinstance(v, bool))  # JSON true is not 1 kWh
    fail((values.isna() & ~blank) | boolean, "value is not a number")
    fail(blank & (quality != "missing"), "value may be empty only when quality is missing")
    coverage = pd.to_numeric(
        table.get("coverage", pd.Series(1.0, index=table.index)), errors="coerce"
    )
    coverage = coverage.fillna(1.0).where(quality != "missing", 0.0)
    fail((coverage < 0) | (coverage > 1), "coverage must be between 0 and 1")

    frame = pd.DataFrame(
        {
            "hour_utc": hours.to_numpy(),
            "value": values.astype("float64").to_numpy(),
            "quality": quality.to_numpy(),
            "coverage": coverage.astype("float64").to_numpy(),
        }
    )
    frame["hour_utc"] = pd.to_datetime(frame["hour_utc"], utc=True)
    if is_csv:
        frame["line"] = table.index.to_numpy()
    duplicated = frame.duplicated("hour_utc", keep=False)
    conflicting = duplicated & ~frame.duplicated(keep=False)
    fail(pd.Series(conflicting.to_numpy(), index=table.index), "conflicting values for one hour")
    return SourceReadings("hourly", unit, frame.drop_duplicates())


def _csv_table(data: bytes) -> pd.DataFrame:
    try:
        table = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SourceDataError(f"not a readable CSV file: {exc}") from None
    table.index = np.arange(2, len(table) + 2)
    return table


def _json_table(data: bytes) -> pd.DataFrame:
    try:
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SourceDataError(f"not valid JSON: {exc}") from None
    readings = document.get("readings") if isinstance(document, dict) else document
    if not isinstance(readings, list) or not all(isinstance(r, dict) for r in readings):
        raise SourceDataError('JSON must be {"readings": [{...}, ...]} or a list of readings')
    return pd.DataFrame(readings)
