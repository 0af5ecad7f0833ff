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
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from connectors.exports import FileConnector
from meterflow.common.errors import SourceDataError
from meterflow.common.timeutil import UnplaceableTime, to_utc
from meterflow.configuration.config import CsvFormat, Meter
from meterflow.standardisation.readings import (
    EARLIEST,
    LATEST,
    MISSING_TOKENS,
    SourceReadings,
    from_arrow,
    is_missing_text,
)


class CsvConnector(FileConnector):
    type: ClassVar[str] = "csv"

    def parse(self, data: bytes, name: str, meter: Meter) -> SourceReadings:
        return parse_csv(data, meter.connector)

    def parse_many(
        self, items: list[tuple[bytes, str]], meter: Meter
    ) -> tuple[SourceReadings, dict[int, SourceDataError]]:
        """Many payloads at once: their readings (a `file` column says whose) and errors."""
        frame, errors = read_csv_files([data for data, _ in items], meter.connector)
        return SourceReadings(meter.connector.kind, meter.connector.unit, frame), errors


def parse_csv(data: bytes, settings: CsvFormat) -> SourceReadings:
    """Source readings from a CSV export; errors name the line (header is line 1), and each
    reading keeps its line. An empty cell, or NaN, NA, N/A, null or None, is a missing value."""
    (result,) = parse_csv_files([data], settings)
    if isinstance(result, SourceDataError):
        raise result
    return result


def parse_csv_files(
    files: list[bytes], settings: CsvFormat
) -> list[SourceReadings | SourceDataError]:
    """`parse_csv` of many exports of one format, each file's readings or error."""
    frame, errors = read_csv_files(files, settings)
    bounds = np.searchsorted(frame["file"].to_numpy(), np.arange(len(files) + 1))
    columns = [c for c in frame.columns if c != "file"]
    return [
        errors[i]
        if i in errors
        else SourceReadings(
            settings.kind,
            settings.unit,
            frame.iloc[bounds[i] : bounds[i + 1]][columns].reset_index(drop=True),
        )
        for i in range(len(files))
    ]


def read_csv_files(
    files: list[bytes], settings: CsvFormat
) -> tuple[pd.DataFrame, dict[int, SourceDataError]]:
    """Many exports of one format at once: files with the same header are read by pyarrow as
    one, then every file's rows are converted together, in one vectorised pass. The readings
    of every file (a `file` column says whose, in order), and the error of each file that
    failed (naming its first bad line; the other files are not held up by it)."""
    errors: dict[int, SourceDataError] = {}
    tables, others = _read_plain(files, settings, errors)
    for i in others:
        try:
            tables.append(_columns(_read_table(files[i], settings.delimiter), settings, [i]))
        except SourceDataError as exc:
            errors[i] = exc
    table = pa.concat_tables(tables) if tables else _EMPTY.empty_table()
    table = table.set_column(0, "stamp", pc.utf8_trim_whitespace(table.column("stamp")))
    table = table.filter(pc.not_equal(table.column("stamp"), ""))
    frame = _converted(table, settings)
    if frame is None:  # something to report, or a format only pandas reads: row by row
        rows = _Rows(from_arrow(table), errors)
        frame = rows.frame.assign(time=_timestamps(rows, settings), value=_numbers(rows))
    rows = _Rows(frame, errors)
    if settings.kind == "interval":
        frame = _intervals(rows, frame, settings, len(files))
    else:
        frame = frame[["file", "time", "value", "line"]]
    frame = frame.sort_values(["file"], kind="stable").reset_index(drop=True)
    for column in ("time", "start", "end"):  # one resolution, whatever the batch held
        if column in frame:
            frame[column] = frame[column].astype("datetime64[us, UTC]")
    return frame, errors


_EMPTY = pa.schema(
    [("stamp", pa.string()), ("text", pa.string()), ("file", pa.int64()), ("line", pa.int64())]
)


def _converted(table: pa.Table, settings: CsvFormat) -> pd.DataFrame | None:
    """Times and numbers converted by pyarrow in one pass, when every time is ISO 8601 with an
    offset, every value a number or a word for none, and all within range; None otherwise."""
    stamps = table.column("stamp")
    offsets = pc.match_substring_regex(stamps, r"(?:Z|[+-]\d{2}:?\d{2})$")
    if settings.timestamp_format != "iso" or not pc.all(offsets).as_py():
        return None
    text = pc.utf8_trim_whitespace(table.column("text"))
    missing = pc.is_in(pc.utf8_lower(text), value_set=pa.array(sorted(MISSING_TOKENS)))
    try:
        times = stamps.cast(pa.timestamp("us", tz="UTC"))
        values = pc.if_else(missing, pa.scalar(None, pa.string()), text).cast(pa.float64())
    except pa.ArrowInvalid:
        return None
    micros = times.cast(pa.int64())  # beyond year 9999 as a number, not a datetime
    if len(times) and (
        pc.min(micros).as_py() < EARLIEST.value // 1000
        or pc.max(micros).as_py() >= LATEST.value // 1000
    ):
        return None
    return from_arrow(
        pa.table(
            {
                "file": table.column("file"),
                "line": table.column("line"),
                "time": times,
                "value": values,
            }
        )
    )


class _Rows:
    """Every file's rows together (file, line, stamp, text); a stage that finds a bad row gives
    its file an error naming that row, and drops the file's rows from later stages."""

    def __init__(self, frame: pd.DataFrame, errors: dict[int, SourceDataError]):
        self.frame, self.errors = frame, errors

    def fail(self, bad: pd.Series, message) -> None:
        """`message(row)` for the first bad row of each file with one."""
        if not bad.any():
            return
        first = self.frame[bad.to_numpy()].drop_duplicates("file")
        for row in first.itertuples():
            self.errors[row.file] = SourceDataError(message(row), line=int(row.line))
        self.frame = self.frame[~self.frame["file"].isin(first["file"])]

    def alive(self, frame: pd.DataFrame) -> np.ndarray:
        """Which rows belong to files that have not failed."""
        return ~frame["file"].isin(list(self.errors)).to_numpy()


def _read_plain(files: list[bytes], settings: CsvFormat, errors: dict) -> tuple[list, list]:
    """Plain files (see _plain_parts) with the same header read by pyarrow as one: the tables,
    and the files to read one by one."""
    plain: dict[bytes, list[tuple[int, bytes, int]]] = {}
    others = []
    for i, data in enumerate(files):
        parts = _plain_parts(data, settings.delimiter)
        if parts is None:
            others.append(i)
        else:
            plain.setdefault(parts[0], []).append((i, parts[1], parts[2]))
    tables = []
    for header, members in plain.items():
        body = b"".join(b if b.endswith(b"\n") else b + b"\n" for _, b, _ in members)
        table = _pyarrow_read(header + b"\n" + body, header, settings)
        counts = [n for _, _, n in members]
        if table is None or table.num_rows != sum(counts):
            others += [i for i, _, _ in members]  # one of them is not plain after all
            continue
        try:
            tables.append(_columns(table, settings, [i for i, _, _ in members], counts))
        except SourceDataError as exc:
            errors.update({i: exc for i, _, _ in members})
    return tables, sorted(others)


def _plain_parts(data: bytes, delimiter: str) -> tuple[bytes, bytes, int] | None:
    """(header, body, rows) of a file pyarrow reads as pandas would: no byte order mark, no
    blank line, a header of distinct, unquoted names; None otherwise."""
    header, _, body = data.partition(b"\n")
    if data[:3] == b"\xef\xbb\xbf" or b'"' in data or not body.strip():
        return None
    if b"\n\n" in data or b"\n\r\n" in data or data.startswith((b"\n", b"\r")):
        return None
    try:
        names = header.decode().rstrip("\r").split(delimiter)
    except UnicodeDecodeError:
        return None
    if "" in names or len(set(names)) < len(names):
        return None
    return header, body, body.count(b"\n") + (not body.endswith(b"\n"))


def _pyarrow_read(data: bytes, header: bytes, settings: CsvFormat) -> pa.Table | None:
    """The file's cells as text; only the time and value columns are kept when both are there
    (a logger export's other columns would take several times the file's size in memory)."""
    names = header.decode().rstrip("\r").split(settings.delimiter)
    needed = [settings.timestamp_column, settings.value_column]
    options = pacsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.string()),
        include_columns=needed if set(needed) <= set(names) else None,
    )
    try:
        return pacsv.read_csv(
            io.BytesIO(data),
            parse_options=pacsv.ParseOptions(delimiter=settings.delimiter),
            convert_options=options,
        )
    except pa.ArrowInvalid:
        return None


def _read_table(data: bytes, delimiter: str) -> pa.Table:
    """Every cell of one file as text, by pandas (the files pyarrow cannot take as they are)."""
    try:
        frame = pd.read_csv(
            io.BytesIO(data),
            sep=delimiter,
            dtype=str,
            skip_blank_lines=False,
            keep_default_na=False,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SourceDataError(f"not a readable CSV file: {exc}") from None
    # A column with an empty header is addressed by position: column1, column2, ...
    frame.columns = [
        f"column{i}" if str(name).startswith("Unnamed: ") else str(name)
        for i, name in enumerate(frame.columns, start=1)
    ]
    return pa.Table.from_pandas(frame.astype(str), preserve_index=False)


def _columns(
    table: pa.Table, settings: CsvFormat, files: list[int], counts: list[int] | None = None
) -> pa.Table:
    """The timestamp and value columns as `stamp` and `text`, with each row's file and line
    (`counts`: how many rows each file has, in order; one file if None)."""
    for column in (settings.timestamp_column, settings.value_column):
        if column not in table.column_names:
            raise SourceDataError(
                f"no column {column!r} (columns: {', '.join(table.column_names)})", line=1
            )
    counts = counts or [table.num_rows]
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return pa.table(
        {
            "stamp": table.column(settings.timestamp_column).cast(pa.string()),
            "text": table.column(settings.value_column).cast(pa.string()),
            "file": pa.array(np.repeat(np.array(files, dtype="int64"), counts)),
            "line": pa.array(np.arange(table.num_rows, dtype="int64") - starts + 2),  # file lines
        }
    )


def _timestamps(rows: _Rows, settings: CsvFormat) -> pd.Series:
    text = rows.frame["stamp"]
    fmt = settings.timestamp_format
    if fmt == "epoch":
        numbers = pd.to_numeric(text, errors="coerce")
        rows.fail(numbers.isna(), lambda r: f"{r.stamp!r} is not a Unix timestamp")
        numbers = numbers[rows.frame.index]
        outside = (numbers < EARLIEST.timestamp()) | (numbers >= LATEST.timestamp())
        rows.fail(
            outside,
            lambda r: f"{r.stamp!r} is not a Unix time from {EARLIEST.year} to {LATEST.year}",
        )
        return pd.to_datetime(numbers[rows.frame.index], unit="s", utc=True)
    fmt = "ISO8601" if fmt == "iso" else fmt
    aware = text.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True)
    files_aware = aware.groupby(rows.frame["file"]).agg(["any", "all"])
    mixed = files_aware.index[files_aware["any"] & ~files_aware["all"]]
    rows.fail(
        rows.frame["file"].isin(mixed) & ~aware,
        lambda r: f"{r.stamp!r} is not a timestamp with an offset, like the other rows",
    )
    aware = aware[rows.frame.index]
    parsed = pd.Series(pd.NaT, index=rows.frame.index, dtype="datetime64[us, UTC]")
    for offsets in (True, False):
        chosen = aware == offsets
        if chosen.any():
            text = rows.frame.loc[chosen, "stamp"]
            times = pd.to_datetime(text, format=fmt, errors="coerce", utc=offsets)
            parsed[chosen] = times if offsets else times.dt.tz_localize("UTC")
    rows.fail(
        parsed.isna(),
        lambda r: f"{r.stamp!r} is not a timestamp in format {settings.timestamp_format!r}",
    )
    _in_range(rows, parsed[rows.frame.index])
    naive = ~aware[rows.frame.index]
    utc = parsed[rows.frame.index].copy()
    if naive.any():
        utc[naive] = _to_utc(rows, utc[naive].dt.tz_localize(None), settings.timezone)
        utc = utc[rows.frame.index]
    _in_range(rows, utc[rows.frame.index])
    return utc[rows.frame.index]


def _to_utc(rows: _Rows, wall: pd.Series, zone: str) -> pd.Series:
    """Wall times to UTC: all files at once, or file by file where a daylight-saving change
    needs each file's own row order (or makes a time impossible: that file fails)."""
    try:
        return to_utc(wall, zone)
    except UnplaceableTime:
        pass
    out = pd.Series(pd.NaT, index=wall.index, dtype="datetime64[us, UTC]")
    for file, stamps in wall.groupby(rows.frame.loc[wall.index, "file"]):
        try:
            out[stamps.index] = to_utc(stamps, zone)
        except UnplaceableTime as exc:
            line = int(rows.frame.at[exc.row, "line"])
            rows.errors[file] = SourceDataError(str(exc), line=line)
    rows.frame = rows.frame[rows.alive(rows.frame)]
    return out[out.index.isin(rows.frame.index)]


def _in_range(rows: _Rows, times: pd.Series) -> None:
    outside = (times < EARLIEST) | (times >= LATEST)
    rows.fail(
        outside.reindex(rows.frame.index, fill_value=False),
        lambda r: (
            f"{r.stamp!r} is outside the times Meterflow handles ({EARLIEST.year} to {LATEST.year})"
        ),
    )


def _numbers(rows: _Rows) -> pd.Series:
    text = rows.frame["text"]
    missing = is_missing_text(text)
    numbers = pd.to_numeric(text.str.strip().where(~missing), errors="coerce")
    rows.fail(numbers.isna() & ~missing, lambda r: f"{r.text!r} is not a number")
    return numbers[rows.frame.index].astype("float64")


def _intervals(rows: _Rows, frame: pd.DataFrame, settings: CsvFormat, files: int) -> pd.DataFrame:
    frame = frame[frame.index.isin(rows.frame.index)]
    if settings.interval_minutes:
        length = pd.Series(pd.Timedelta(minutes=settings.interval_minutes), index=frame.index)
    else:
        unique = frame[["file", "time"]].drop_duplicates().sort_values(["file", "time"])
        steps = unique.groupby("file")["time"].diff().dropna()
        median = (
            steps.groupby(unique.loc[steps.index, "file"]).median()
            if len(steps)
            else pd.Series(dtype="timedelta64[us]")
        )
        for file in range(files):
            if file not in rows.errors and file not in median.index:
                rows.errors[file] = SourceDataError(
                    "one row is not enough to infer the interval; set intervalMinutes"
                )
        frame = frame[rows.alive(frame)]
        length = pd.Series(median.reindex(frame["file"]).to_numpy(), index=frame.index)
    start = frame["time"] - length if settings.label == "end" else frame["time"]
    return pd.DataFrame(
        {
            "file": frame["file"],
            "start": start,
            "end": start + length,
            "value": frame["value"],
            "quality": np.where(frame["value"].isna(), "missing", "measured"),
            "line": frame["line"],
        }
    )
