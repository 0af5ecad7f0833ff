"""`csv`: meter exports dropped into the participant's storage under the meter's `path`.

Settings (XML attributes) say which column holds the timestamp and in what format and zone,
whether it labels an interval's start or end, which column holds the value, its unit, and the
reading kind: interval energy, cumulative register or instantaneous value.
"""

from __future__ import annotations

import io
from typing import ClassVar

import numpy as np
import pandas as pd

from connectors.exports import FileConnector
from meterflow.config import CsvFormat, Meter
from meterflow.errors import SourceDataError
from meterflow.readings import (
    EARLIEST,
    LATEST,
    SourceReadings,
    first_out_of_range,
    is_missing_text,
)
from meterflow.timeutil import UnplaceableTime, to_utc


class CsvConnector(FileConnector):
    type: ClassVar[str] = "csv"

    def parse(self, data: bytes, name: str, meter: Meter) -> SourceReadings:
        return parse_csv(data, meter.connector)


def parse_csv(data: bytes, settings: CsvFormat) -> SourceReadings:
    """Source readings from a CSV export; errors name the line (header is line 1), and each
    reading keeps its line. An empty cell, or NaN, NA, N/A, null or None, is a missing value."""
    try:
        table = pd.read_csv(
            io.BytesIO(data),
            sep=settings.delimiter,
            dtype=str,
            skip_blank_lines=False,
            keep_default_na=False,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SourceDataError(f"not a readable CSV file: {exc}") from None
    # A column with an empty header is addressed by position: column1, column2, ...
    table.columns = [
        f"column{i}" if str(name).startswith("Unnamed: ") else name
        for i, name in enumerate(table.columns, start=1)
    ]
    for column in (settings.timestamp_column, settings.value_column):
        if column not in table.columns:
            raise SourceDataError(
                f"no column {column!r} (columns: {', '.join(map(str, table.columns))})", line=1
            )
    table.index = np.arange(2, len(table) + 2)  # file line numbers
    table = table[table[settings.timestamp_column].str.strip() != ""]
    stamps = _timestamps(table[settings.timestamp_column], settings)
    values = _numbers(table[settings.value_column])
    if settings.kind == "interval":
        frame = _intervals(stamps, values, settings)
    else:
        frame = pd.DataFrame({"time": stamps, "value": values})
    frame = frame.assign(line=frame.index.astype("int64"))
    return SourceReadings(settings.kind, settings.unit, frame.reset_index(drop=True))


def _timestamps(text: pd.Series, settings: CsvFormat) -> pd.Series:
    text = text.str.strip()
    fmt = settings.timestamp_format
    if fmt == "epoch":
        numbers = pd.to_numeric(text, errors="coerce")
        _first_bad(numbers.isna(), text, "a Unix timestamp")
        outside = (numbers < EARLIEST.timestamp()) | (numbers >= LATEST.timestamp())
        _first_bad(outside, text, f"a Unix time from {EARLIEST.year} to {LATEST.year}")
        return pd.to_datetime(numbers, unit="s", utc=True)
    fmt = "ISO8601" if fmt == "iso" else fmt
    aware = text.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True)
    if aware.any() and not aware.all():
        _first_bad(~aware, text, "a timestamp with an offset, like the other rows")
    parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=bool(aware.all()))
    _first_bad(parsed.isna(), text, f"a timestamp in format {settings.timestamp_format!r}")
    _in_range(parsed if parsed.dt.tz else parsed.dt.tz_localize("UTC"), text)
    try:
        utc = to_utc(parsed, settings.timezone)
    except UnplaceableTime as exc:
        raise SourceDataError(str(exc), line=int(exc.row)) from None
    except ValueError as exc:
        raise SourceDataError(str(exc)) from None
    _in_range(utc, text)
    return utc


def _in_range(times: pd.Series, text: pd.Series) -> None:
    line = first_out_of_range(times)
    if line is not None:
        raise SourceDataError(
            f"{text[line]!r} is outside the times Meterflow handles "
            f"({EARLIEST.year} to {LATEST.year})",
            line=int(line),
        )


def _numbers(text: pd.Series) -> pd.Series:
    missing = is_missing_text(text)
    numbers = pd.to_numeric(text.str.strip().where(~missing), errors="coerce")
    _first_bad(numbers.isna() & ~missing, text, "a number")
    return numbers.astype("float64")


def _first_bad(bad: pd.Series, text: pd.Series, expected: str) -> None:
    if bad.any():
        line = int(bad.idxmax())
        raise SourceDataError(f"{text[line]!r} is not {expected}", line=line)


def _intervals(stamps: pd.Series, values: pd.Series, settings: CsvFormat) -> pd.DataFrame:
    if settings.interval_minutes:
        length = pd.Timedelta(minutes=settings.interval_minutes)
    else:
        steps = stamps.drop_duplicates().sort_values().diff().dropna()
        if steps.empty:
            raise SourceDataError(
                "one row is not enough to infer the interval; set intervalMinutes"
            )
        length = steps.median()
    start = stamps - length if settings.label == "end" else stamps
    return pd.DataFrame(
        {
            "start": start,
            "end": start + length,
            "value": values,
            "quality": np.where(values.isna(), "missing", "measured"),
        }
    )
