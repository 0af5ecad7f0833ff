"""The intervals of an MRV job in the property's local time, as UTC spans."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta

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
    """The job's intervals that ended by `until`, oldest first (a local day may be 23 or 25 h)."""
    last = pd.Timestamp(job.end, tz=zone) if job.end else pd.Timestamp(until).tz_convert(zone)
    bounds = pd.date_range(pd.Timestamp(job.start, tz=zone), last, freq=FREQUENCY[job.interval])
    utc = [b.tz_convert("UTC").to_pydatetime() for b in bounds]
    return [Period(a, b) for a, b in itertools.pairwise(utc) if b <= until]
