"""Time: every stored timestamp is UTC and hour-beginning; zones are applied at the edges."""

from __future__ import annotations

import difflib
import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo

import numpy as np
import pandas as pd

HOUR = timedelta(hours=1)
_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")


def parse_zone(name: str) -> tzinfo:
    """An IANA zone (DST aware), 'UTC', or a fixed offset such as '+10:00' (e.g. NEM time)."""
    if name in ("UTC", "Z"):
        return UTC
    match = _OFFSET.fullmatch(name)
    if match:
        hours, minutes = int(match[2]), int(match[3])
        if hours > 23 or minutes > 59:
            raise ValueError(
                f"{name!r} is not a UTC offset: hours go up to 23 and minutes up to 59 "
                "(e.g. +10:00, -03:30)"
            )
        sign = 1 if match[1] == "+" else -1
        return timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(name, zoneinfo.available_timezones(), n=1)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown time zone {name!r}{guess}: use an IANA name such as Australia/Sydney, "
            "UTC, or a fixed offset such as +10:00"
        ) from None


class UnplaceableTime(ValueError):
    """Wall times that cannot be placed in a zone; `row` is the index label of the first."""

    def __init__(self, message: str, row: object):
        super().__init__(message)
        self.row = row


def to_utc(stamps: pd.Series, zone: str) -> pd.Series:
    """Wall-clock timestamps in `zone` to UTC.

    The repeated hour at the end of DST is told apart by row order (pandas 'infer'); wall times
    that do not exist (the skipped hour at the start of DST) raise UnplaceableTime, naming the
    first of them. Timestamps that already carry an offset are converted as they are.
    """
    stamps = pd.to_datetime(stamps)
    if stamps.dt.tz is not None:
        return stamps.dt.tz_convert(UTC)
    tz = parse_zone(zone)
    if not isinstance(tz, zoneinfo.ZoneInfo):
        return stamps.dt.tz_localize(tz).dt.tz_convert(UTC)
    try:
        local = stamps.dt.tz_localize(tz, ambiguous="infer", nonexistent="raise")
    except Exception:  # pytz-style errors differ across pandas versions
        raise _unplaceable(stamps, tz, zone) from None
    return local.dt.tz_convert(UTC)


def _unplaceable(stamps: pd.Series, tz: zoneinfo.ZoneInfo, zone: str) -> UnplaceableTime:
    """Why the wall times cannot be placed in `zone`, told at the first one that cannot: the
    person who made the export knows clocks changing, not pandas' `nonexistent` argument."""
    given = stamps.notna()
    standard_time = np.zeros(len(stamps), dtype=bool)
    skipped = given & stamps.dt.tz_localize(tz, ambiguous=standard_time, nonexistent="NaT").isna()
    # otherwise a repeated hour whose rows do not say which occurrence they are
    twice = given & stamps.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT").isna()
    first = stamps[skipped if skipped.any() else twice]
    wall, row = first.iloc[0], first.index[0]
    moment = wall.to_pydatetime()
    before, after = (moment.replace(tzinfo=tz, fold=fold).utcoffset() for fold in (0, 1))
    shift = abs(after - before)
    step = "an hour" if shift == HOUR else f"{shift.total_seconds() / 60:g} minutes"
    change = (
        f"on {moment:%Y-%m-%d} clocks go {'forward' if after > before else 'back'} {step}, "
        f"from UTC{_offset(before)} to UTC{_offset(after)} (a daylight-saving change)"
    )
    standard = f"give its zone as the fixed offset {_offset(min(before, after))} instead of {zone}"
    when = wall.isoformat(sep=" ", timespec="minutes" if moment.second == 0 else "seconds")
    if skipped.any():
        return UnplaceableTime(
            f"{when} does not exist in {zone}: {change}, skipping it. If the export keeps "
            f"standard time all year, {standard}; otherwise fix or remove that row",
            row,
        )
    return UnplaceableTime(
        f"{when} happens twice in {zone}: {change}, and the rows do not say which one they mean "
        f"(a repeated hour must appear twice, in order). If the export keeps standard time all "
        f"year, {standard}; otherwise give the timestamps UTC offsets "
        f"(like {moment:%Y-%m-%dT%H:%M}{_offset(before)}) or remove the row",
        row,
    )


def _offset(delta: timedelta) -> str:
    """+10:00, -03:30: a UTC offset as people write it."""
    minutes = int(delta.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def merge_windows(windows: list[HourWindow]) -> list[HourWindow]:
    """The windows merged where they overlap or touch, in order."""
    merged: list[HourWindow] = []
    for window in sorted(windows, key=lambda w: w.start):
        if merged and window.start <= merged[-1].end:
            merged[-1] = HourWindow(merged[-1].start, max(merged[-1].end, window.end))
        else:
            merged.append(window)
    return merged


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class HourWindow:
    """A half-open span of whole UTC hours [start, end)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for moment in (self.start, self.end):
            if moment.tzinfo is None or moment != floor_hour(moment):
                raise ValueError(f"window bounds must be whole UTC hours, got {moment!r}")
        if self.end < self.start:
            raise ValueError(f"window ends before it starts: {self.start} .. {self.end}")

    @classmethod
    def parse(cls, start: str | datetime, end: str | datetime) -> HourWindow:
        """From ISO strings or datetimes; naive values are taken as UTC."""
        return cls(as_utc(start), as_utc(end))

    def hours(self) -> pd.DatetimeIndex:
        return pd.date_range(self.start, self.end, freq="h", inclusive="left")

    def days(self) -> list[str]:
        """UTC dates (yyyy-mm-dd) the window touches: the standardised file partitions."""
        if self.end == self.start:
            return []
        last = self.end - HOUR
        return [d.strftime("%Y-%m-%d") for d in pd.date_range(self.start.date(), last.date())]

    def __str__(self) -> str:
        return f"{self.start:%Y-%m-%dT%H}Z..{self.end:%Y-%m-%dT%H}Z"


def as_utc(value: str | datetime) -> datetime:
    """An ISO string or a datetime as an aware UTC datetime; naive values are taken as UTC."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def warehouse_time(moment: datetime) -> datetime:
    """A moment as the warehouse stores it: naive UTC (TIMESTAMP columns hold UTC)."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def chunks(window: HourWindow, days: int) -> list[HourWindow]:
    """The window cut into spans of at most `days` days."""
    step, out, start = timedelta(days=days), [], window.start
    while start < window.end:
        out.append(HourWindow(start, min(start + step, window.end)))
        start += step
    return out
