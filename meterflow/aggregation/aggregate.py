"""Aggregate meters to property-hours per data type (sum, mean, max or min, as configured).

Coverage of a property-hour is meters reporting / meters expected, so an hour summed from three
of four meters says so instead of looking like a drop in consumption. Submeters (part of what a
main meter already measures) stay per meter and are left out, so nothing is counted twice. Each
day file is read once for all properties; the aggregation is one group-by per data type.
"""

from __future__ import annotations

import pandas as pd

from meterflow.common.storage import Storage
from meterflow.configuration.config import Participant
from meterflow.hours.hourly_store import read_days
from meterflow.standardisation.readings import QUALITY_RANK, worst_quality
from meterflow.standardisation.units import STANDARD_UNIT

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


def aggregate_changes(
    storage: Storage, participant: Participant, changed: dict[str, pd.DataFrame]
) -> pd.DataFrame:
    """Recompute exactly the property-hours touched by the changed meter-hours."""
    affected = affected_property_hours(participant, changed)
    frames = []
    for data_type in sorted({data_type for _, data_type in affected}):
        wanted = pd.concat(
            [
                pd.DataFrame({"property_id": p, "hour_utc": hours})
                for (p, t), hours in sorted(affected.items())
                if t == data_type
            ],
            ignore_index=True,
        )
        days = sorted(set(wanted["hour_utc"].dt.strftime("%Y-%m-%d")))
        frames.append(
            aggregate(participant, data_type, read_days(storage, data_type, days), wanted)
        )
    if not frames:
        return pd.DataFrame(columns=PROPERTY_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def aggregate_rows(participant: Participant, rows: pd.DataFrame) -> pd.DataFrame:
    """Every property-hour of the stored `rows` (meter_id, data_type, hourly columns) that a
    main meter reports or is expected for, aggregated."""
    frames = []
    mains = {m.id: m.property_id for m in participant.meters if m.role == "main"}
    for data_type, typed in rows.groupby("data_type", sort=True):
        property_ids = typed["meter_id"].map(mains)
        wanted = pd.DataFrame({"property_id": property_ids, "hour_utc": typed["hour_utc"]})
        wanted = wanted.dropna().drop_duplicates()
        frames.append(aggregate(participant, data_type, typed, wanted))
    if not frames:
        return pd.DataFrame(columns=PROPERTY_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def aggregate(
    participant: Participant, data_type: str, rows: pd.DataFrame, wanted: pd.DataFrame
) -> pd.DataFrame:
    """Property-hour rows for the `wanted` (property_id, hour_utc) pairs, from every meter's
    stored `rows` of the data type."""
    mains = pd.DataFrame(
        [
            (m.id, m.property_id)
            for m in participant.meters
            if m.data_type == data_type and m.role == "main"
        ],
        columns=["meter_id", "property_id"],
    )
    expected = mains.groupby("property_id").size().rename("meters_expected")
    reporting = rows[(rows["quality"] != "missing") & (rows["coverage"] > 0)]
    reporting = reporting.merge(mains, on="meter_id").merge(wanted, on=["property_id", "hour_utc"])
    method = participant.aggregation_method(data_type)
    grouped = reporting.assign(rank=reporting["quality"].map(QUALITY_RANK)).groupby(
        ["property_id", "hour_utc"]
    )
    result = wanted.drop_duplicates().merge(
        pd.DataFrame(
            {
                "value": grouped["value"].agg(method),
                "meters_reporting": grouped["meter_id"].nunique(),
                "rank": grouped["rank"].max(),
            }
        ).reset_index(),
        on=["property_id", "hour_utc"],
        how="left",
    )
    result = result.merge(expected, left_on="property_id", right_index=True, how="left")
    reporting_count = result["meters_reporting"].fillna(0).astype("int64")
    expected_count = result["meters_expected"].fillna(0).astype("int64")
    rank = result["rank"].fillna(QUALITY_RANK["missing"]).astype("int64")
    return pd.DataFrame(
        {
            "property_id": result["property_id"],
            "data_type": data_type,
            "hour_utc": result["hour_utc"],
            "value": result["value"].astype("float64"),
            "unit": STANDARD_UNIT[data_type],
            "quality": worst_quality(rank.to_numpy()),
            "coverage": reporting_count / expected_count.where(expected_count > 0),
            "meters_reporting": reporting_count,
            "meters_expected": expected_count,
        }
    )[PROPERTY_COLUMNS].sort_values(["property_id", "hour_utc"], ignore_index=True)
