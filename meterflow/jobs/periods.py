"""The intervals of a meter job in the property's local time, as UTC spans (a local day may be
23 or 25 hours, a local hour may start at half past in UTC)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pandas as pd

from meterflow.configuration.config import MrvJob

FREQUENCY = {"1h": "h", "1d": "D", "1mo": "MS"}


@dataclass(frozen=True)
class Period:
    start: datetime  # UTC
    end: datetime

    @property
    def hours(self) -> pd.DatetimeIndex:
        """The UTC hours whose start lies in the period (the meter-hours it is made of)."""
        first = pd.Timestamp(self.start).ceil("h")
        return pd.date_range(first, self.end, freq="h", inclusive="left")

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


def due_periods(job: MrvJob, zone: str, until: datetime) -> list[Period]:
    """The job's intervals that ended by `until`, oldest first."""
    last = pd.Timestamp(job.end, tz=zone) if job.end else pd.Timestamp(until).tz_convert(zone)
    bounds = pd.date_range(pd.Timestamp(job.start, tz=zone), last, freq=FREQUENCY[job.interval])
    utc = [b.tz_convert("UTC").to_pydatetime() for b in bounds]
    return [Period(a, b) for a, b in itertools.pairwise(utc) if b <= until]


def interval_starts(hours: pd.Series, interval: str, zone: str) -> pd.Series:
    """The start (UTC, naive) of the local interval each UTC hour (naive) starts in."""
    local = hours.dt.tz_localize("UTC").dt.tz_convert(zone).dt.tz_localize(None)
    if interval == "1mo":
        floored = local.dt.to_period("M").dt.start_time
    else:
        floored = local.dt.floor(FREQUENCY[interval])
    starts = floored.dt.tz_localize(zone, ambiguous=True, nonexistent="shift_forward")
    return starts.dt.tz_convert("UTC").dt.tz_localize(None)


def interval_ends(starts: pd.Series, interval: str, zone: str) -> pd.Series:
    """The end (UTC, naive) of the local intervals that start at `starts` (UTC, naive)."""
    if interval == "1h":
        return starts + pd.Timedelta(hours=1)
    local = starts.dt.tz_localize("UTC").dt.tz_convert(zone).dt.tz_localize(None)
    step = pd.DateOffset(months=1) if interval == "1mo" else pd.DateOffset(days=1)
    ends = (local + step).dt.tz_localize(zone, ambiguous=True, nonexistent="shift_forward")
    return ends.dt.tz_convert("UTC").dt.tz_localize(None)


def job_span(start: date | None, end: date | None, zone: str) -> tuple[datetime | None, ...]:
    """A job's [start, end) local dates as UTC times (None: open on that side)."""
    return tuple(
        None if day is None else pd.Timestamp(day, tz=zone).tz_convert("UTC").to_pydatetime()
        for day in (start, end)
    )
