"""Time: every stored timestamp is UTC and hour-beginning; zones are applied at the edges."""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo

import pandas as pd

HOUR = timedelta(hours=1)
_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")


def parse_zone(name: str) -> tzinfo:
    """An IANA zone (DST aware), 'UTC', or a fixed offset such as '+10:00' (e.g. NEM time)."""
    if name in ("UTC", "Z"):
        return UTC
    match = _OFFSET.fullmatch(name)
    if match:
        sign = 1 if match[1] == "+" else -1
        return timezone(sign * timedelta(hours=int(match[2]), minutes=int(match[3])))
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name, UTC or +HH:MM)") from None


def to_utc(stamps: pd.Series, zone: str) -> pd.Series:
    """Wall-clock timestamps in `zone` to UTC.

    The repeated hour at the end of DST is told apart by row order (pandas 'infer'); wall times
    that do not exist (the skipped hour at the start of DST) raise, naming the first of them.
    Timestamps that already carry an offset are converted as they are.
    """
    stamps = pd.to_datetime(stamps)
    if stamps.dt.tz is not None:
        return stamps.dt.tz_convert(UTC)
    tz = parse_zone(zone)
    if not isinstance(tz, zoneinfo.ZoneInfo):
        return stamps.dt.tz_localize(tz).dt.tz_convert(UTC)
    try:
        local = stamps.dt.tz_localize(tz, ambiguous="infer", nonexistent="raise")
    except Exception as exc:  # pytz-style errors differ across pandas versions
        raise ValueError(f"cannot place local times in {zone}: {exc}") from None
    return local.dt.tz_convert(UTC)


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
        return cls(_as_utc(start), _as_utc(end))

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


def _as_utc(value: str | datetime) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def warehouse_time(moment: datetime) -> datetime:
    """A moment as the warehouse stores it: naive UTC (TIMESTAMP columns hold UTC)."""
    return moment.astimezone(UTC).replace(tzinfo=None)
