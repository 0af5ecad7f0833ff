"""The local calendar of a property's hours: local date and hour, weekday, public holiday and
office-hours flag, computed from the property's IANA zone so DST days come out right.

An hour is in office hours when its local start time falls inside the configured hours on a
configured day that is not a public holiday (offices are closed on holidays, and benchmarking
reports holiday consumption on its own) nor a closure of the building (a refurbishment, a
shutdown: `is_closed`, with its reason; what a closed building draws is reported on its own).
"""

from __future__ import annotations

from functools import cache

import holidays
import pandas as pd

from meterflow.configuration.config import Closure, Property

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@cache
def public_holidays(country: str, region: str | None, years: range) -> holidays.HolidayBase:
    """Holidays of the country and, where the package knows it, the state or subdivision."""
    try:
        return holidays.country_holidays(country, subdiv=region, years=years)
    except NotImplementedError:
        return holidays.country_holidays(country, years=years)


def calendar_rows(
    participant_id: str,
    prop: Property,
    hours: pd.DatetimeIndex,
    closures: list[Closure] | tuple[Closure, ...] = (),
) -> pd.DataFrame:
    """One row per UTC hour with the property's local calendar attributes; `closures`: the
    property's and its participant's (Participant.closures_of)."""
    local = hours.tz_convert(prop.timezone)
    days = local.tz_localize(None).normalize()
    known = public_holidays(
        prop.country, prop.region, range(local.year.min(), local.year.max() + 1)
    )
    names = pd.Series([known.get(day.date()) for day in days], dtype="object")
    is_holiday = names.notna().to_numpy()
    minutes = local.hour * 60 + local.minute
    reason = pd.Series(None, index=range(len(hours)), dtype="object")
    for closure in closures:
        shut = (days >= pd.Timestamp(closure.start)) & (days < pd.Timestamp(closure.end))
        reason[shut] = closure.reason
    is_closed = reason.notna().to_numpy()
    office = pd.Series(False, index=range(len(hours))).to_numpy()
    if prop.office_hours is not None:
        start, end = (_minutes(t) for t in (prop.office_hours.start, prop.office_hours.end))
        days_open = [WEEKDAYS.index(d) for d in prop.office_hours.days]
        office = local.weekday.isin(days_open) & (minutes >= start) & (minutes < end)
        office = office & ~is_holiday & ~is_closed
    return pd.DataFrame(
        {
            "participant_id": participant_id,
            "property_id": prop.id,
            "hour_utc": hours,
            "local_date": days.date,
            "local_hour": local.hour.astype("int64"),
            "weekday": local.weekday.astype("int64"),
            "is_weekend": local.weekday >= 5,
            "is_holiday": is_holiday,
            "holiday_name": names.to_numpy(),
            "is_office_hours": office,
            "is_closed": is_closed,
            "closure_reason": reason.to_numpy(),
        }
    )


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)
