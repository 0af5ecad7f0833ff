"""`csv`: meter exports dropped into the participant's storage under the meter's `path`.

Settings (XML attributes) say which column holds the timestamp and in what format and zone,
whether it labels an interval's start or end, which column holds the value, its unit, and the
reading kind: interval energy, cumulative register or instantaneous value.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from functools import cache
from typing import BinaryIO, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from connectors.exports import FileConnector
from meterflow.common.errors import SourceDataError
from meterflow.common.frames import from_arrow, to_arrow
from meterflow.common.timeutil import UnplaceableTime, to_utc
from meterflow.configuration.config import CsvFormat, Meter
from meterflow.standardisation.readings import (
    EARLIEST,
    LATEST,
    MISSING_TOKENS,
    SourceReadings,
    either,
    is_missing_text,
)


class CsvConnector(FileConnector):
    type: ClassVar[str] = "csv"

    def parse(self, data: bytes, name: str, meter: Meter) -> SourceReadings:
        return parse_csv(data, meter.connector)

    def parse_stream(self, stream: BinaryIO, name: str, meter: Meter) -> SourceReadings:
        return parse_csv_stream(stream, meter.connector)

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


PART = 2 * 1024 * 1024  # bytes of a streamed export read at a time
# The checks a row can fail, in the order they run: a file is reported at the first check any of
# its rows fails (at that check's first such row), whatever other checks later rows fail.
_CHECKS = ("offset", "format", "range", "zone", "utc range", "number")
_OFFSET = r"(?:Z|[+-]\d{2}:?\d{2})$"
# Line numbers in pandas' messages: records counted from the header (line 1) or from 0 (row).
_PANDAS_LINE = re.compile(r"(C error: Expected \d+ fields in line |starting at row )(\d+)")


def parse_csv_stream(
    stream: BinaryIO, settings: CsvFormat, part_bytes: int | None = None
) -> SourceReadings:
    """`parse_csv` of an export read from a binary stream: the same readings or the same error,
    never holding the whole file's bytes or text (only the readings grow with its rows).

    The stream is read `part_bytes` at a time (never more in one read) and cut where a record
    ends outside quotes; a part runs on to the end of a record longer than it (one with a quote
    never closed: to the end of the file). The bytes held are at most about two parts and the
    longest record. Each part is read after the file's header and first record, which decide
    what pandas makes of the rows (their columns, and whether the first field is an index), by
    the first stage of `read_csv_files`, its lines counted in the file. What takes the whole
    file is done once, at the end: whether some times carry an offset and others not, placing
    wall-clock times in the zone (a repeated hour is told apart by row order), inferring the
    interval. As for the whole file, the error is the first fault reading the file, else the
    first row failing the earliest check (see _CHECKS): every part is read, even after a bad row.

    Where it can differ from `parse_csv`: a value written with a leading + and over 15
    significant digits can differ in its last bit (pandas rounds it by the values beside it). A
    delimiter that is not one character (a meter's settings allow no other) has no records
    to cut at: the stream is then read whole.
    """
    part_bytes = PART if part_bytes is None else part_bytes
    if part_bytes < 1:
        raise ValueError(f"part_bytes must be at least 1, not {part_bytes}")
    if len(settings.delimiter) != 1 or settings.delimiter in '"\r\n':  # no records to cut at
        return parse_csv(b"".join(iter(lambda: stream.read(part_bytes), b"")), settings)
    parts = _Parts(settings)
    header, prefix = None, b""  # prefix: the header and the first record, before later parts
    for part in _record_parts(stream, settings.delimiter, part_bytes):
        if header is None:
            header, part = _split_record(part, settings.delimiter)
            if not part:
                continue
        if not parts.add((prefix or header) + part, skip=1 if prefix else 0):
            break
        prefix = prefix or _ended(header) + _ended(_split_record(part, settings.delimiter)[0])
    if not parts.read:  # an empty file, or a header alone
        parts.add(header or b"", skip=0)
    return parts.readings()


class _Parts:
    """The readings of one export parsed a part at a time (see parse_csv_stream)."""

    def __init__(self, settings: CsvFormat):
        self.settings = settings
        self.read = False  # a part was read
        self.frames: list[pd.DataFrame] = []
        self.error: tuple[int, int, SourceDataError] | None = None  # check, line, error
        self.rows = 0  # rows read before the next part
        self.aware = False  # some time carries an offset
        self.naive: tuple[int, str] | None = None  # the first time without one: line, text
        self.edges: dict[int, str] = {}  # times within two days of EARLIEST or LATEST: text

    def add(self, data: bytes, skip: int) -> bool:
        """Read a part: the header, `skip` rows already read (the file's first), then its own
        rows. False once the file cannot be read (its error is then known)."""
        errors: dict[int, SourceDataError] = {}
        table = _read_rows([data], self.settings, errors)
        self.read = True
        before = self.rows
        shift = before - skip  # the part's lines (and pandas' row numbers) in the file's
        if errors:
            reason = _PANDAS_LINE.sub(lambda m: f"{m[1]}{int(m[2]) + shift}", errors[0].reason)
            self._fail(-1, SourceDataError(reason, line=errors[0].line))
            return False
        self.rows += table.num_rows - skip
        lines = pc.add(table.column("line"), shift)  # the part's own rows from line before + 2
        return self._convert(
            table.set_column(3, "line", lines).filter(pc.greater(lines, before + 1))
        )

    def _convert(self, table: pa.Table) -> bool:
        settings = self.settings
        table = _stamped(table)
        if settings.timestamp_format != "epoch" and table.num_rows:
            stamps = from_arrow(table.select(["stamp", "line"]))
            aware = _aware(stamps["stamp"])
            self.aware = self.aware or bool(aware.any())
            if self.naive is None and not aware.all():
                row = stamps[~aware.to_numpy()].iloc[0]
                self.naive = (int(row.line), row.stamp)
        errors: dict[int, SourceDataError] = {}
        checks: dict[int, str] = {}
        frame = _readings(table, settings, errors, checks, zone=False)
        if errors:  # after a bad value, the frame still has every row's time (for the zone)
            self._fail(_CHECKS.index(checks[0]), errors[0])
        if self.error is not None and self.error[0] < _CHECKS.index("zone"):
            self.frames.clear()  # the file's error is known: no stage left needs its times
            return True
        if len(frame):
            near = frame["line"][
                (frame["time"] < EARLIEST + _TWO_DAYS) | (frame["time"] >= LATEST - _TWO_DAYS)
            ]
            if len(near):
                kept = table.filter(pc.is_in(table.column("line"), pa.array(near.to_numpy())))
                columns = kept.select(["line", "stamp"]).to_pydict().values()
                self.edges.update(zip(*columns, strict=True))
        self.frames.append(frame[["file", "line", "time", "value"]])  # not the rows' text
        return True

    def _fail(self, check: int, error: SourceDataError) -> None:
        line = error.line or 0
        if self.error is None or (check, line) < self.error[:2]:
            self.error = (check, line, error)

    def readings(self) -> SourceReadings:
        settings = self.settings
        if self.aware and self.naive:
            line, stamp = self.naive
            self._fail(_CHECKS.index("offset"), SourceDataError(_no_offset(stamp), line=line))
        if self.error is not None and self.error[0] < _CHECKS.index("zone"):
            raise self.error[2]
        frames, self.frames = [f for f in self.frames if len(f)] or self.frames[:1], []
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        del frames
        errors: dict[int, SourceDataError] = {}
        if self.naive and len(frame):  # wall-clock times, placed in the zone as one series
            checks: dict[int, str] = {}
            rows = _Rows(frame.assign(stamp=frame["line"].map(self.edges)), errors, checks)
            naive = pd.Series(True, index=frame.index)
            times = _placed(rows, frame["time"], naive, settings.timezone)
            frame = rows.frame.drop(columns="stamp").assign(time=times)
            if errors:
                self._fail(_CHECKS.index(checks[0]), errors[0])
        if self.error is not None:
            raise self.error[2]
        frame = _finished(frame.reset_index(drop=True), settings, errors, 1)
        if errors:
            raise errors[0]
        columns = [c for c in frame.columns if c != "file"]
        return SourceReadings(settings.kind, settings.unit, frame[columns].reset_index(drop=True))


_TWO_DAYS = pd.Timedelta(days=2)  # more than any zone's offset


@cache
def _records(delimiter: str) -> tuple[re.Pattern, re.Pattern]:
    """One record, and as many whole records as there are, as pandas' tokenizer reads them: a
    field starting with a quote runs to the quote closing it ("" is a quote inside), then to
    the delimiter; any other field runs to the delimiter (a quote in it is a character); a
    record ends at \\n, \\r\\n or a \\r not followed by \\n. Possessive: linear, no backtracking."""
    d = re.escape(delimiter.encode())
    field = rb'(?:"(?:[^"]++|"")*+"[^' + d + rb"\r\n]*+|[^\"" + d + rb"\r\n][^" + d + rb"\r\n]*+)?+"
    record = field + rb"(?:" + d + field + rb")*+(?:\r\n|\n|\r(?=[^\n]))"
    return re.compile(record), re.compile(rb"(?:" + record + rb")*+")


def _split_record(data: bytes, delimiter: str) -> tuple[bytes, bytes]:
    """The first record of `data` (all of it if no record ends in it), and what follows."""
    found = _records(delimiter)[0].match(data)
    end = found.end() if found else len(data)
    return data[:end], data[end:]


def _ended(record: bytes) -> bytes:
    """A record ending in \\n where it ended in \\r alone (before a part starting with a blank
    line, \\r would make one line ending of the two)."""
    return record[:-1] + b"\n" if record.endswith(b"\r") else record


def _record_parts(stream: BinaryIO, delimiter: str, size: int) -> Iterator[bytes]:
    """The stream's bytes, read `size` at a time, in parts of at least `size` bytes (but the
    last) that end where a record does: no part ends inside a record, nor inside quotes."""
    records = _records(delimiter)[1]
    held = b""
    while chunk := stream.read(size):
        held += chunk
        if len(held) < size:
            continue
        end = held.rfind(b"\n") + 1 if b'"' not in held else 0  # no quotes: a line feed ends one
        end = end or records.match(held).end()
        if end:
            yield held[:end]
            held = held[end:]
    if held:
        yield held


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
    frame = _readings(_read_rows(files, settings, errors), settings, errors)
    return _finished(frame, settings, errors, len(files)), errors


def _read_rows(
    files: list[bytes], settings: CsvFormat, errors: dict[int, SourceDataError]
) -> pa.Table:
    """Every file's rows as text: `stamp`, `text`, `file`, `line` (a file that cannot be read
    gets an error instead)."""
    tables, others = _read_plain(files, settings, errors)
    for i in others:
        try:
            tables.append(_columns(_read_table(files[i], settings.delimiter), settings, [i]))
        except SourceDataError as exc:
            errors[i] = exc
    return pa.concat_tables(tables) if tables else _EMPTY.empty_table()


def _readings(
    table: pa.Table,
    settings: CsvFormat,
    errors: dict[int, SourceDataError],
    checks: dict[int, str] | None = None,
    *,
    zone: bool = True,
) -> pd.DataFrame:
    """The first stage: rows (see _read_rows) to `file`, `line`, `time` (UTC) and `value`; a file
    with a bad row gets an error instead (`checks`: which of _CHECKS it failed). Without `zone`,
    what needs the whole file is left out: times without an offset stay wall-clock times (in
    UTC's place), not checked against rows with one."""
    table = _stamped(table)
    frame = _converted(table, settings)
    if frame is None:  # something to report, or a format only pandas reads: row by row
        rows = _Rows(from_arrow(table), errors, checks)
        frame = rows.frame.assign(time=_timestamps(rows, settings, zone), value=_numbers(rows))
    return frame


def _stamped(table: pa.Table) -> pa.Table:
    """The rows with a time (trimmed): blank lines and rows without one are left out."""
    table = table.set_column(0, "stamp", pc.utf8_trim_whitespace(table.column("stamp")))
    return table.filter(pc.not_equal(table.column("stamp"), ""))


def _finished(
    frame: pd.DataFrame, settings: CsvFormat, errors: dict[int, SourceDataError], files: int
) -> pd.DataFrame:
    """The readings of the reading kind (intervals inferred over each whole file), in order."""
    rows = _Rows(frame, errors)
    if settings.kind == "interval":
        frame = _intervals(rows, frame, settings, files)
    else:
        frame = frame[["file", "time", "value", "line"]]
    frame = frame.sort_values(["file"], kind="stable").reset_index(drop=True)
    for column in ("time", "start", "end"):  # one resolution, whatever the batch held
        if column in frame:
            frame[column] = frame[column].astype("datetime64[us, UTC]")
    return frame


_EMPTY = pa.schema(
    [("stamp", pa.string()), ("text", pa.string()), ("file", pa.int64()), ("line", pa.int64())]
)


def _converted(table: pa.Table, settings: CsvFormat) -> pd.DataFrame | None:
    """Times and numbers converted by pyarrow in one pass, when every time is ISO 8601 with an
    offset, every value a number or a word for none, and all within range; None otherwise."""
    stamps = table.column("stamp")
    offsets = pc.match_substring_regex(stamps, _OFFSET)
    if settings.timestamp_format != "iso" or not pc.all(offsets).as_py():
        return None
    text = pc.utf8_trim_whitespace(table.column("text"))
    missing = pc.is_in(pc.utf8_lower(text), value_set=pa.array(sorted(MISSING_TOKENS)))
    if pc.any(pc.starts_with(text, "+")).as_py():  # pandas rounds these its own way
        return None
    try:
        times = stamps.cast(pa.timestamp("us", tz="UTC"))
        values = pc.if_else(missing, pa.scalar(None, pa.string()), text).cast(pa.float64())
    except pa.ArrowInvalid:
        return None
    if pc.any(pc.is_nan(values)).as_py():  # -nan, nan(1): not a word for none, to pandas
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

    def __init__(
        self,
        frame: pd.DataFrame,
        errors: dict[int, SourceDataError],
        checks: dict[int, str] | None = None,
    ):
        self.frame, self.errors = frame, errors
        self.checks = {} if checks is None else checks  # file: the check (_CHECKS) it failed

    def fail(self, check: str, bad: pd.Series, message) -> None:
        """`message(row)` for the first bad row of each file with one."""
        if not bad.any():
            return
        first = self.frame[bad.to_numpy()].drop_duplicates("file")
        for row in first.itertuples():
            self.failed(row.file, check, SourceDataError(message(row), line=int(row.line)))
        self.frame = self.frame[~self.frame["file"].isin(first["file"])]

    def failed(self, file: int, check: str, error: SourceDataError) -> None:
        self.errors[file], self.checks[file] = error, check

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
    if data[:3] == b"\xef\xbb\xbf" or b'"' in data or not body or body.isspace():
        return None
    if b"\n\n" in data or b"\n\r\n" in data or data.startswith((b"\n", b"\r")):
        return None
    # A line ending in \r alone: pyarrow skips the blank line that makes, where pandas counts it.
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
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
    """Every cell of one file as text, by pandas (the files pyarrow cannot take as they are). A
    byte that is not UTF-8 becomes U+FFFD: in the time or value column the row then fails naming
    its line; elsewhere it is ignored, as pyarrow ignores the columns it does not read."""
    try:
        frame = pd.read_csv(
            io.BytesIO(data),
            sep=delimiter,
            dtype=str,
            skip_blank_lines=False,
            keep_default_na=False,
            encoding_errors="replace",
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SourceDataError(f"not a readable CSV file: {exc}") from None
    # A column with an empty header is addressed by position: column1, column2, ...
    frame.columns = [
        f"column{i}" if str(name).startswith("Unnamed: ") else str(name)
        for i, name in enumerate(frame.columns, start=1)
    ]
    return to_arrow(frame.astype(str))


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


def _timestamps(rows: _Rows, settings: CsvFormat, zone: bool = True) -> pd.Series:
    """Each row's time in UTC; without `zone`, times without an offset stay wall-clock times
    (in UTC's place) and rows with and without one are not compared (see _readings)."""
    text = rows.frame["stamp"]
    fmt = settings.timestamp_format
    if fmt == "epoch":
        numbers = pd.to_numeric(text, errors="coerce")
        rows.fail("format", numbers.isna(), lambda r: f"{r.stamp!r} is not a Unix timestamp")
        numbers = numbers[rows.frame.index]
        outside = (numbers < EARLIEST.timestamp()) | (numbers >= LATEST.timestamp())
        rows.fail(
            "range",
            outside,
            lambda r: f"{r.stamp!r} is not a Unix time from {EARLIEST.year} to {LATEST.year}",
        )
        return pd.to_datetime(numbers[rows.frame.index], unit="s", utc=True)
    fmt = "ISO8601" if fmt == "iso" else fmt
    aware = _aware(text)
    if zone:
        files_aware = aware.groupby(rows.frame["file"]).agg(["any", "all"])
        mixed = files_aware.index[files_aware["any"] & ~files_aware["all"]]
        rows.fail("offset", rows.frame["file"].isin(mixed) & ~aware, lambda r: _no_offset(r.stamp))
        aware = aware[rows.frame.index]
    parsed = pd.Series(pd.NaT, index=rows.frame.index, dtype="datetime64[us, UTC]")
    for offsets in (True, False):
        chosen = aware == offsets
        if chosen.any():
            text = rows.frame.loc[chosen, "stamp"]
            times = pd.to_datetime(text, format=fmt, errors="coerce", utc=offsets)
            parsed[chosen] = times if offsets else times.dt.tz_localize("UTC")
    rows.fail(
        "format",
        parsed.isna(),
        lambda r: f"{r.stamp!r} is not a timestamp in format {settings.timestamp_format!r}",
    )
    _in_range(rows, parsed[rows.frame.index], "range")
    if not zone:
        return parsed[rows.frame.index]
    return _placed(rows, parsed, ~aware, settings.timezone)


def _aware(text: pd.Series) -> pd.Series:
    """Which times carry a UTC offset (or Z)."""
    return text.str.contains(_OFFSET, regex=True)


def _no_offset(stamp: str) -> str:
    return f"{stamp!r} is not a timestamp with an offset, like the other rows"


def _placed(rows: _Rows, times: pd.Series, naive: pd.Series, zone: str) -> pd.Series:
    """Times in UTC: the `naive` ones (wall-clock times, in UTC's place) placed in the zone,
    each file's in row order; then every time checked to be within range."""
    naive = naive[rows.frame.index]
    utc = times[rows.frame.index].copy()
    if naive.any():
        utc[naive] = _to_utc(rows, utc[naive].dt.tz_localize(None), zone)
        utc = utc[rows.frame.index]
    _in_range(rows, utc[rows.frame.index], "utc range")
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
            rows.failed(file, "zone", SourceDataError(str(exc), line=line))
    rows.frame = rows.frame[rows.alive(rows.frame)]
    return out[out.index.isin(rows.frame.index)]


def _in_range(rows: _Rows, times: pd.Series, check: str) -> None:
    outside = (times < EARLIEST) | (times >= LATEST)
    rows.fail(
        check,
        outside.reindex(rows.frame.index, fill_value=False),
        lambda r: (
            f"{r.stamp!r} is outside the times Meterflow handles ({EARLIEST.year} to {LATEST.year})"
        ),
    )


def _numbers(rows: _Rows) -> pd.Series:
    text = rows.frame["text"]
    missing = is_missing_text(text)
    numbers = pd.to_numeric(text.str.strip().where(~missing), errors="coerce")
    rows.fail("number", numbers.isna() & ~missing, lambda r: f"{r.text!r} is not a number")
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
            "quality": either(frame["value"].isna(), "missing", "measured"),
            "line": frame["line"],
        }
    )
