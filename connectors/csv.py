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
from meterflow.readings import SourceReadings
from meterflow.timeutil import to_utc


class CsvConnector(FileConnector):
    type: ClassVar[str] = "csv"

    def parse(self, data: bytes, name: str, meter: Meter) -> SourceReadings:
        return parse_csv(data, meter.connector)


def parse_csv(data: bytes, settings: CsvFormat) -> SourceReadings:
    """Source readings from a CSV export; errors name the line (header is line 1)."""
    try:
        table = pd.read_csv(
            io.BytesIO(data),
            sep=settings.delimiter,
            dtype=str,
            skip_blank_lines=False,
            keep_default_na=False,
        )
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
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
    return SourceReadings(settings.kind, settings.unit, frame.reset_index(drop=True))


def _timestamps(text: pd.Series, settings: CsvFormat) -> pd.Series:
    text = text.str.strip()
    fmt = settings.timestamp_format
    if fmt == "epoch":
        numbers = pd.to_numeric(text, errors="coerce")
        _first_bad(numbers.isna(), text, "a Unix timestamp")
        return pd.to_datetime(numbers, unit="s", utc=True)
    fmt = "ISO8601" if fmt == "iso" else fmt
    aware = text.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True)
    if aware.any() and not aware.all():
        _first_bad(~aware, text, "a timestamp with an offset, like the other rows")
    parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=bool(aware.all()))
    _first_bad(parsed.isna(), text, f"a timestamp in format {settings.timestamp_format!r}")
    try:
        return to_utc(parsed, settings.timezone)
    except ValueError as exc:
        raise SourceDataError(str(exc)) from None


def _numbers(text: pd.Series) -> pd.Series:
    text = text.str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    _first_bad(numbers.isna() & (text != ""), text, "a number")
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
