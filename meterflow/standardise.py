"""Source readings to standardised hourly readings (UTC hour-beginning), vectorised.

- Interval energy is apportioned to the hours it overlaps, pro rata to time.
- Cumulative registers are differenced; a decrease is a noise dip (within 10% of the highest
  reading so far: no energy, and the reference is kept so the recovery is not counted twice),
  a rollover (near the configured register maximum) or a reset (counting again from zero).
  Energy across a gap is spread over the gap and flagged estimated, never dumped in one hour.
- Instantaneous values are integrated over time (trapezoids, hour boundaries interpolated):
  the hourly value is the time-weighted mean, or, for power feeding energy, the kWh.
- Duplicated timestamps keep the last reading given; rows may arrive in any order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from meterflow.readings import (
    QUALITY_RANK,
    SourceReadings,
    empty_hourly,
    worst_quality,
)
from meterflow.units import STANDARD_UNIT, quantity, to_standard

HOUR_NS = 3_600_000_000_000
DIP_TOLERANCE = 0.9


def standardise(
    readings: SourceReadings,
    data_type: str,
    *,
    register_max: float | None = None,
    max_gap_minutes: int | None = None,
) -> pd.DataFrame:
    """Hourly readings in the data type's standard unit from any kind of source readings."""
    unit = STANDARD_UNIT[data_type]
    if len(readings) == 0:
        return empty_hourly()
    frame = readings.frame.copy()
    frame["value"] = to_standard(frame["value"].to_numpy(), readings.unit)
    if readings.kind == "interval":
        hourly = _intervals_to_hours(frame)
    elif readings.kind == "cumulative":
        max_gap = None if max_gap_minutes is None else max_gap_minutes * 60_000_000_000
        if register_max is not None:
            register_max = float(to_standard(np.array([register_max]), readings.unit)[0])
        hourly = _intervals_to_hours(_register_to_intervals(frame, register_max, max_gap))
    elif readings.kind == "instantaneous":
        max_gap = None if max_gap_minutes is None else max_gap_minutes * 60_000_000_000
        integrate = quantity(readings.unit) == "power"
        hourly = _samples_to_hours(frame, max_gap, integrate)
    else:
        hourly = _hourly_passthrough(frame)
    hourly["unit"] = unit
    return hourly[["hour_utc", "value", "unit", "quality", "coverage"]].reset_index(drop=True)


def _ns(column: pd.Series) -> np.ndarray:
    return (
        column.dt.tz_convert("UTC").dt.as_unit("ns").dt.tz_localize(None).to_numpy().view("int64")
    )


def _hour_frame(hours_ns, values, covered_ns, quality_rank) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "hour_utc": pd.to_datetime(hours_ns, utc=True),
            "value": values,
            "quality": worst_quality(quality_rank),
            "coverage": np.minimum(covered_ns / HOUR_NS, 1.0),
        }
    )


def _dedupe(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """Keep the last reading given for each timestamp, then sort by time."""
    frame = frame.assign(_order=np.arange(len(frame)))
    frame = frame.drop_duplicates(subset=[key], keep="last")
    return frame.sort_values([key, "_order"]).drop(columns="_order")


def _intervals_to_hours(frame: pd.DataFrame) -> pd.DataFrame:
    """Apportion interval energy to hours by overlap: E_h = sum E_i * overlap(i, h) / len(i)."""
    frame = _dedupe(frame, "start")
    start, end = _ns(frame["start"]), _ns(frame["end"])
    # A later interval overlapping an earlier one would count the same time twice: drop it.
    reach = np.maximum.accumulate(end)
    keep = np.ones(len(start), dtype=bool)
    keep[1:] = start[1:] >= reach[:-1]
    start, end = start[keep], end[keep]
    value = frame["value"].to_numpy()[keep]
    rank = frame["quality"].map(QUALITY_RANK).to_numpy()[keep]
    valid = end > start
    start, end, value, rank = start[valid], end[valid], value[valid], rank[valid]
    if len(start) == 0:
        return empty_hourly()

    first = start // HOUR_NS
    touched = (end - 1) // HOUR_NS - first + 1
    row = np.repeat(np.arange(len(start)), touched)
    step = np.arange(touched.sum()) - np.repeat(np.cumsum(touched) - touched, touched)
    hour = (first[row] + step) * HOUR_NS
    overlap = np.minimum(end[row], hour + HOUR_NS) - np.maximum(start[row], hour)
    share = value[row] * overlap / (end - start)[row]
    # Missing intervals say the hour was not covered; they add neither energy nor coverage.
    counted = rank[row] != QUALITY_RANK["missing"]
    parts = pd.DataFrame(
        {
            "hour": hour,
            "value": np.where(counted & ~np.isnan(share), share, 0.0),
            "covered": np.where(counted, overlap, 0),
            "rank": rank[row],
        }
    )
    hours = parts.groupby("hour", sort=True).agg(
        value=("value", "sum"), covered=("covered", "sum"), rank=("rank", "max")
    )
    value = np.where(hours["covered"] > 0, hours["value"], np.nan)
    return _hour_frame(hours.index.to_numpy(), value, hours["covered"].to_numpy(), hours["rank"])


def _register_to_intervals(
    frame: pd.DataFrame, register_max: float | None, max_gap: int | None
) -> pd.DataFrame:
    """Difference register readings into interval energy (see the module docstring)."""
    frame = _dedupe(frame, "time").dropna(subset=["value"])
    times, readings = _ns(frame["time"]), frame["value"].to_numpy(dtype="float64")
    if len(times) < 2:  # one reading is no energy yet: the next one differences against it
        none = pd.to_datetime(times[:0], utc=True)
        return pd.DataFrame({"start": none, "end": none, "value": [], "quality": []})
    steps = np.diff(times)
    gap = max_gap if max_gap is not None else int(np.median(steps) * 1.5)
    delta = np.empty(len(steps))
    estimated = steps > gap
    reference = readings[0]
    for i, reading in enumerate(readings[1:]):
        if reading >= reference:
            delta[i], reference = reading - reference, reading
        elif reading >= DIP_TOLERANCE * reference:
            delta[i] = 0.0  # noise dip: keep the reference, so the recovery counts once
            estimated[i] = True
        elif register_max is not None and reference >= DIP_TOLERANCE * register_max:
            delta[i], reference = register_max - reference + reading, reading
        else:
            delta[i], reference = reading, reading  # reset: counting again from zero
            estimated[i] = True
    return pd.DataFrame(
        {
            "start": pd.to_datetime(times[:-1], utc=True),
            "end": pd.to_datetime(times[1:], utc=True),
            "value": delta,
            "quality": np.where(estimated, "estimated", "measured"),
        }
    )


def _samples_to_hours(frame: pd.DataFrame, max_gap: int | None, integrate: bool) -> pd.DataFrame:
    """Time-weighted hourly means (or integrals) of instantaneous samples."""
    frame = _dedupe(frame, "time").dropna(subset=["value"])
    times, values = _ns(frame["time"]), frame["value"].to_numpy(dtype="float64")
    if len(times) < 2:
        return empty_hourly()
    steps = np.diff(times)
    gap = max_gap if max_gap is not None else int(np.median(steps) * 2)
    # Add the hour boundaries inside the sampled span so that no segment crosses an hour.
    boundaries = np.arange((times[0] // HOUR_NS + 1) * HOUR_NS, times[-1], HOUR_NS)
    grid = np.union1d(times, boundaries)
    levels = np.interp(grid, times, values)
    seg_start, seg_end = grid[:-1], grid[1:]
    # Segments inside a silence longer than the gap limit are not covered.
    source_step = steps[np.searchsorted(times, seg_start, side="right") - 1]
    covered = source_step <= gap
    duration = (seg_end - seg_start)[covered]
    area = ((levels[:-1] + levels[1:]) / 2)[covered] * duration
    parts = pd.DataFrame(
        {"hour": seg_start[covered] // HOUR_NS * HOUR_NS, "d": duration, "a": area}
    )
    hours = parts.groupby("hour", sort=True).agg(d=("d", "sum"), a=("a", "sum"))
    covered_ns = hours["d"].to_numpy()
    mean = hours["a"].to_numpy() / covered_ns
    value = mean * covered_ns / HOUR_NS if integrate else mean
    rank = np.zeros(len(hours), dtype=int)
    return _hour_frame(hours.index.to_numpy(), value, covered_ns, rank)


def _hourly_passthrough(frame: pd.DataFrame) -> pd.DataFrame:
    """Already-hourly readings: last one per hour wins, as for every other kind."""
    frame = _dedupe(frame, "hour_utc")
    hours = _ns(frame["hour_utc"])
    covered = (frame["coverage"].to_numpy(dtype="float64") * HOUR_NS).astype("int64")
    rank = frame["quality"].map(QUALITY_RANK).to_numpy()
    return _hour_frame(hours, frame["value"].to_numpy(dtype="float64"), covered, rank)
