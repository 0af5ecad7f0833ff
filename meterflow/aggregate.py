"""Aggregate meters to property-hours per data type (sum, mean, max or min, as configured).

Coverage of a property-hour is meters reporting / meters expected, so an hour summed from three
of four meters says so instead of looking like a drop in consumption. Submeters (part of what a
main meter already measures) stay per meter and are left out, so nothing is counted twice.
"""

from __future__ import annotations

import pandas as pd

from meterflow.config import Participant
from meterflow.hourly_store import read_hours
from meterflow.readings import QUALITY_RANK, worst_quality
from meterflow.storage import Storage
from meterflow.units import STANDARD_UNIT

PROPERTY_COLUMNS = [
    "property_id",
    "data_type",
    "hour_utc",
    "value",
    "unit",
    "quality",
    "coverage",
    "meters_reporting",
    "meters_expected",
]


def affected_property_hours(
    participant: Participant, changed: dict[str, pd.DataFrame]
) -> dict[tuple[str, str], pd.DatetimeIndex]:
    """(property, data type) -> the hours whose aggregate must be recomputed."""
    affected: dict[tuple[str, str], pd.DatetimeIndex] = {}
    for meter_id, rows in changed.items():
        if rows.empty:
            continue
        meter = participant.meter(meter_id)
        if meter.role == "submeter":
            continue
        key = (meter.property_id, meter.data_type)
        hours = pd.DatetimeIndex(rows["hour_utc"])
        affected[key] = affected[key].union(hours) if key in affected else hours.unique()
    return affected


def aggregate_property(
    storage: Storage,
    participant: Participant,
    property_id: str,
    data_type: str,
    hours: pd.DatetimeIndex,
) -> pd.DataFrame:
    """Property-hour rows for `hours`, from the stored readings of all its meters of the type."""
    meters = [
        m
        for m in participant.property(property_id).meters
        if m.data_type == data_type and m.role == "main"
    ]
    days = sorted(set(hours.strftime("%Y-%m-%d")))
    readings = pd.concat(
        [read_hours(storage, meter, days).assign(meter_id=meter.id) for meter in meters],
        ignore_index=True,
    )
    readings = readings[readings["hour_utc"].isin(hours)]
    reporting = readings[(readings["quality"] != "missing") & (readings["coverage"] > 0)]
    method = participant.aggregation_method(data_type)
    grouped = reporting.groupby("hour_utc")
    result = pd.DataFrame(
        {
            "value": grouped["value"].agg(method),
            "meters_reporting": grouped["meter_id"].nunique(),
            "rank": grouped["quality"].agg(lambda q: q.map(QUALITY_RANK).max()),
        }
    ).reindex(pd.DatetimeIndex(hours.unique(), name="hour_utc"))
    result["meters_reporting"] = result["meters_reporting"].fillna(0).astype("int64")
    result["rank"] = result["rank"].fillna(QUALITY_RANK["missing"]).astype("int64")
    result = result.reset_index()
    return pd.DataFrame(
        {
            "property_id": property_id,
            "data_type": data_type,
            "hour_utc": result["hour_utc"],
            "value": result["value"].astype("float64"),
            "unit": STANDARD_UNIT[data_type],
            "quality": worst_quality(result["rank"].to_numpy()),
            "coverage": result["meters_reporting"] / len(meters),
            "meters_reporting": result["meters_reporting"],
            "meters_expected": len(meters),
        }
    )[PROPERTY_COLUMNS].sort_values("hour_utc", ignore_index=True)


def aggregate_changes(
    storage: Storage, participant: Participant, changed: dict[str, pd.DataFrame]
) -> pd.DataFrame:
    """Recompute exactly the property-hours touched by the changed meter-hours."""
    frames = [
        aggregate_property(storage, participant, property_id, data_type, hours)
        for (property_id, data_type), hours in sorted(
            affected_property_hours(participant, changed).items()
        )
    ]
    if not frames:
        return pd.DataFrame(columns=PROPERTY_COLUMNS)
    return pd.concat(frames, ignore_index=True)
