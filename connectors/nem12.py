"""`nem12`: AEMO NEM12 interval data files (plain or zipped) dropped under the meter's `path`.

Records: 100 header, 200 NMI data details (NMI, register, suffix, unit, interval length),
300 interval data (one day), 400 interval events (quality of a run of intervals when the day's
quality is V), 500 B2B details, 900 end. A file may hold many NMIs and registers: a meter takes
the rows of its NMI and suffix. Timestamps are NEM time, UTC+10 all year (no DST).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import UTC, datetime, timedelta, timezone
from typing import ClassVar

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


class Nem12Connector(FileConnector):
    type: ClassVar[str] = "nem12"

    def parse(self, data: bytes, name: str, meter: Meter) -> SourceReadings:
        settings = meter.connector
        return parse_nem12(data, settings.nmi, settings.suffix)


def parse_nem12(data: bytes, nmi: str, suffix: str) -> SourceReadings:
    """Interval readings of one NMI register from a NEM12 file; empty if the file lacks it."""
    rows: list[tuple[datetime, datetime, float, str, int]] = []
    unit = "kWh"
    for text in _csv_texts(data):
        found_unit = _read_register(text, nmi, suffix, rows)
        unit = found_unit or unit
    frame = pd.DataFrame(rows, columns=["start", "end", "value", "quality", "line"])
    for column in ("start", "end"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["value"] = frame["value"].astype("float64")
    return SourceReadings("interval", unit, frame)


def _csv_texts(data: bytes) -> list[str]:
    if data[:2] == b"PK":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                return [
                    archive.read(n).decode("utf-8-sig")
                    for n in archive.namelist()
                    if not n.endswith("/")
                ]
        except zipfile.BadZipFile as exc:
            raise SourceDataError(f"not a readable zip file: {exc}") from None
    try:
        return [data.decode("utf-8-sig")]
    except UnicodeDecodeError as exc:
        raise SourceDataError(f"not a text file: {exc}") from None


def _read_register(text: str, nmi: str, suffix: str, rows: list) -> str | None:
    """Append the (start, end, kWh-or-unit value, quality) intervals of one register."""
    lines = csv.reader(io.StringIO(text))
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
