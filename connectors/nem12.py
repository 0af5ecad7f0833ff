"""`nem12`: AEMO NEM12 interval data files (plain or zipped) dropped under the meter's `path`.

Records: 100 header, 200 NMI data details (NMI, register, suffix, unit, interval length),
300 interval data (one day), 400 interval events (quality of a run of intervals when the day's
quality is V), 500 B2B details, 900 end. A file may hold many NMIs and registers: a meter takes
the rows of its NMI and suffix. Timestamps are NEM time, UTC+10 all year (no DST).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import BinaryIO, ClassVar

import pandas as pd

from connectors.exports import FileConnector
from meterflow.common.errors import SourceDataError
from meterflow.configuration.config import Meter
from meterflow.standardisation.readings import EARLIEST, LATEST, SourceReadings

NEM_TIME = timezone(timedelta(hours=10))
# A 300 record's quality method: a letter, with a method number for substitutions (E52, S14).
QUALITY_METHOD = re.compile(r"[AEFNSV]\d{0,2}")
# First letter of a quality method: Actual, Estimated, Final substituted, Null, Substituted.
QUALITY = {"A": "measured", "E": "estimated", "F": "estimated", "S": "estimated", "N": "missing"}
UNITS = {"KWH": "kWh", "WH": "Wh", "MWH": "MWh"}
PART = 1024 * 1024  # bytes of a streamed file read at a time


class Nem12Connector(FileConnector):
    type: ClassVar[str] = "nem12"

    def parse(self, data: bytes, name: str, meter: Meter) -> SourceReadings:
        settings = meter.connector
        return parse_nem12(data, settings.nmi, settings.suffix)

    def parse_stream(self, stream: BinaryIO, name: str, meter: Meter) -> SourceReadings:
        settings = meter.connector
        return parse_nem12_stream(stream, settings.nmi, settings.suffix)


def parse_nem12(data: bytes, nmi: str, suffix: str) -> SourceReadings:
    """Interval readings of one NMI register from a NEM12 file; empty if the file lacks it."""
    return parse_nem12_stream(io.BytesIO(data), nmi, suffix)


def parse_nem12_stream(
    stream: BinaryIO, nmi: str, suffix: str, part_bytes: int = PART
) -> SourceReadings:
    """`parse_nem12` of a file read from a binary stream, `part_bytes` at a time: the file's
    lines are read as they come, never all of its bytes or text at once.

    A zip (starting "PK") is opened on the stream itself when it can seek, and its members are
    read a part at a time; a stream that cannot seek is read whole first (zipfile needs to seek:
    its directory is at the end), which is bounded by the zip's compressed size, not its text.
    As when the whole file was decoded before it was read, a fault of the bytes (a zip that
    cannot be read, text that is not UTF-8) is reported even after a bad record before it, and
    even in what follows the 900 record."""
    rows: list[tuple[datetime, datetime, float, str, int]] = []
    unit = "kWh"
    texts = _texts(stream, part_bytes)
    for lines in texts:
        try:
            unit = _read_register(lines, nmi, suffix, rows) or unit
            _drain(lines)  # what follows the 900 record
        except (SourceDataError, csv.Error) as exc:
            if getattr(exc, "line", 0) is None:  # the bytes' own fault: the first there is
                raise
            _drain(lines)  # a fault of the bytes after a bad record comes first
            for rest in texts:
                _drain(rest)
            raise
    frame = pd.DataFrame(rows, columns=["start", "end", "value", "quality", "line"])
    for column in ("start", "end"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["value"] = frame["value"].astype("float64")
    return SourceReadings("interval", unit, frame)


def _texts(stream: BinaryIO, size: int) -> Iterator[Iterator[str]]:
    """The lines of each text of the file: the file itself, or each member of a zip."""
    head = b""
    while len(head) < 2 and (more := stream.read(min(2 - len(head), size))):
        head += more
    if head != b"PK":
        yield _lines(stream, size, head)
        return
    if getattr(stream, "seekable", lambda: False)():
        stream.seek(-len(head), io.SEEK_CUR)
    else:  # zipfile seeks: a stream that cannot is read whole (compressed: less than its text)
        stream = io.BytesIO(head + b"".join(iter(lambda: stream.read(size), b"")))
    try:
        with zipfile.ZipFile(stream) as archive:
            for name in archive.namelist():
                if not name.endswith("/"):
                    yield _member(archive, name, size)
    except zipfile.BadZipFile as exc:
        raise SourceDataError(f"not a readable zip file: {exc}") from None


def _member(archive: zipfile.ZipFile, name: str, size: int) -> Iterator[str]:
    """A zip member's lines; a member that cannot be read (its checksum is checked at its
    end) is reported before text in it that is not UTF-8, as when it was read whole first."""
    try:
        with archive.open(name) as member:
            try:
                yield from _lines(member, size)
            except SourceDataError:
                while member.read(size):
                    pass
                raise
    except zipfile.BadZipFile as exc:
        raise SourceDataError(f"not a readable zip file: {exc}") from None


def _lines(stream: BinaryIO, size: int, head: bytes = b"") -> Iterator[str]:
    """The lines of UTF-8 text (a byte order mark dropped), split as io.StringIO(text,
    newline="") splits them (\\n, \\r\\n or \\r, kept), read `size` bytes at a time. Bytes that are
    not UTF-8: "not a text file", saying what decoding the whole text says (same position)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    while len(head) < 3 and (more := stream.read(size)):
        head += more
    part = head[3:] if head.startswith(codecs.BOM_UTF8) else head
    part, done, rest = part or stream.read(size), 0, ""  # done: bytes decoded (after the mark)
    while True:
        held = len(decoder.getstate()[0])  # bytes of a character begun in the last part
        try:
            text = rest + decoder.decode(part, final=not part)
        except UnicodeDecodeError as exc:
            raise SourceDataError(f"not a text file: {_decode_error(exc, done - held)}") from None
        done += len(part)
        if not part:
            if text:
                yield text
            return
        cr = text.endswith("\r")  # held back: it may begin \r\n
        rest = ""
        for line in io.StringIO(text[:-1] if cr else text, newline=""):
            rest = line
            if line.endswith(("\n", "\r")):
                yield line
                rest = ""
        rest += "\r" if cr else ""
        part = stream.read(size)


def _decode_error(exc: UnicodeDecodeError, before: int) -> str:
    """What `exc` says, its positions counted from the start of the text (`before` bytes of it
    precede the bytes it was decoding)."""
    start, end = before + exc.start, before + exc.end
    if exc.end == exc.start + 1:
        what = f"byte 0x{exc.object[exc.start]:02x} in position {start}"
    else:
        what = f"bytes in position {start}-{end - 1}"
    return f"'{exc.encoding}' codec can't decode {what}: {exc.reason}"


def _drain(lines: Iterator[str]) -> None:
    for _ in lines:
        pass


def _read_register(text: Iterable[str], nmi: str, suffix: str, rows: list) -> str | None:
    """Append the (start, end, kWh-or-unit value, quality) intervals of one register, reading
    the records of a text's lines."""
    lines = csv.reader(text)
    first = next(lines, None)
    if not first or first[0].strip() != "100" or len(first) < 2 or first[1].strip() != "NEM12":
        raise SourceDataError("not a NEM12 file: the first record must be 100,NEM12", line=1)
    selected, unit, minutes = False, None, 30
    day_rows: list[tuple] = []
    for line, record in enumerate(lines, start=2):
        kind = record[0].strip() if record else ""
        if kind == "200":
            _close_day(day_rows, rows)
            if len(record) < 9:
                raise SourceDataError("200 record needs at least 9 fields", line=line)
            selected = record[1].strip() == nmi and record[4].strip() == suffix
            if selected:
                unit = UNITS.get(record[7].strip().upper())
                if unit is None:
                    raise SourceDataError(
                        f"unit {record[7]!r} of NMI {nmi} {suffix} is not energy", line=line
                    )
                minutes = _interval_minutes(record[8], line)
        elif kind == "300" and selected:
            _close_day(day_rows, rows)
            day_rows.extend(_day(record, minutes, line))
        elif kind == "400" and selected:
            _apply_event(record, day_rows, line)
        elif kind == "900":
            break
    _close_day(day_rows, rows)
    return unit


def _interval_minutes(field: str, line: int) -> int:
    if field.strip() not in ("5", "15", "30"):
        raise SourceDataError(f"interval length {field!r} is not 5, 15 or 30", line=line)
    return int(field)


def _day(record: list[str], minutes: int, line: int) -> list[list]:
    count = 1440 // minutes
    found = next(
        (i - 2 for i, field in enumerate(record[2:], 2) if QUALITY_METHOD.fullmatch(field.strip())),
        None,
    )
    if found is None:
        raise SourceDataError(
            f"300 record has no quality method (A, E, F, N, S or V) after its values; the 200 "
            f"record's {minutes}-minute intervals need {count} values, then the method",
            line=line,
        )
    if found != count:
        raise SourceDataError(
            f"300 record has {found} interval values before its quality method "
            f"{record[2 + found].strip()!r}; the 200 record's {minutes}-minute intervals need "
            f"{count}",
            line=line,
        )
    try:
        day = datetime.strptime(record[1].strip(), "%Y%m%d").replace(tzinfo=NEM_TIME)
    except ValueError:
        raise SourceDataError(f"{record[1]!r} is not a date (YYYYMMDD)", line=line) from None
    if not EARLIEST <= day < LATEST - timedelta(days=1):
        raise SourceDataError(
            f"300 record date {record[1]!r} is outside the times Meterflow handles "
            f"({EARLIEST.year} to {LATEST.year})",
            line=line,
        )
    method = record[2 + count].strip()
    quality = QUALITY.get(method[:1], "measured")  # V: each interval's own, from 400 records
    step = timedelta(minutes=minutes)
    intervals = []
    for i, field in enumerate(record[2 : 2 + count]):
        try:
            value = float(field) if field.strip() else float("nan")
        except ValueError:
            raise SourceDataError(
                f"interval {i + 1} value {field!r} is not a number", line=line
            ) from None
        start = (day + i * step).astimezone(UTC)
        intervals.append([start, start + step, value, quality, line])
    return intervals


def _apply_event(record: list[str], day_rows: list[list], line: int) -> None:
    """A 400 record sets the quality of intervals first..last (1-based) of the current day."""
    try:
        first, last = int(record[1]), int(record[2])
    except (IndexError, ValueError):
        raise SourceDataError(
            "400 record needs start and end interval numbers", line=line
        ) from None
    if not 1 <= first <= last <= len(day_rows):
        raise SourceDataError(f"400 record intervals {first}..{last} out of range", line=line)
    quality = QUALITY.get(record[3].strip()[:1], "estimated")
    for interval in day_rows[first - 1 : last]:
        interval[3] = quality


def _close_day(day_rows: list[list], rows: list) -> None:
    rows.extend(tuple(r) for r in day_rows)
    day_rows.clear()
