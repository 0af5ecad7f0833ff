"""Source readings to standardised hourly readings (UTC hour-beginning), vectorised.

- Interval energy is apportioned to the hours it overlaps, pro rata to time.
- Cumulative registers are differenced; a decrease is a noise dip (within 10% of the highest
  reading so far: no energy, and the reference is kept so the recovery is not counted twice),
  a rollover (near the configured register maximum) or a reset (counting again from zero).
  Energy across a gap is spread over the gap and flagged estimated, never dumped in one hour.
- Instantaneous values are integrated over time (trapezoids, hour boundaries interpolated):
  the hourly value is the time-weighted mean, or, for power feeding energy, the kWh.
- Duplicated timestamps keep the last reading given; rows may arrive in any order.

Interval and hourly readings of many meters are standardised in one vectorised pass (a `meter`
column keeps them apart); registers and samples, whose settings differ per meter, meter by meter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from meterflow.standardisation.readings import (
    HOURLY_COLUMNS,
    QUALITY_RANK,
    SourceReadings,
    either,
    empty_hourly,
    nanoseconds,
    worst_quality,
)
from meterflow.standardisation.units import STANDARD_UNIT, quantity, standard_unit, to_standard

HOUR_NS = 3_600_000_000_000
ROWS = 1 << 18  # intervals apportioned at a time
DIP_TOLERANCE = 0.9


def standardise(
    readings: SourceReadings,
    data_type: str,
    *,
    register_max: float | None = None,
    max_gap_minutes: int | None = None,
) -> pd.DataFrame:
    """Hourly readings in the data type's standard unit from one meter's source readings."""
    if len(readings) == 0:
        return empty_hourly()
    frame = readings.frame.assign(
        value=to_standard(readings.frame["value"].to_numpy(), readings.unit), meter=0
    )
    if register_max is not None:
        register_max = float(to_standard(np.array([register_max]), readings.unit)[0])
    settings = {0: MeterSettings(data_type, register_max, max_gap_minutes)}
    hourly = standardise_meters(readings.kind, standard_unit(readings.unit), frame, settings)
    return hourly.drop(columns="meter")


@dataclass(frozen=True)
class MeterSettings:
    """What standardising a meter's readings needs besides the readings."""

    data_type: str
    register_max: float | None = None  # in the standard unit
    max_gap_minutes: int | None = None


def standardise_meters(kind: str, unit: str, frame: pd.DataFrame, settings: dict) -> pd.DataFrame:
    """Hourly readings of many meters from their readings of one `kind`, values already in the
    standard `unit`; `frame` has a `meter` column (rows in the order given: later ones win) and
    `settings` maps each meter to its MeterSettings. Columns: meter, hour_utc, value, unit,
    quality, coverage."""
    if frame.empty:
        return empty_hourly().assign(meter=pd.Series([], dtype=frame["meter"].dtype))
    if kind == "interval":
        hourly = _intervals_to_hours(frame)
    elif kind == "hourly":
        hourly = _hourly_passthrough(frame)
    else:
        parts = []
        for meter, rows in frame.groupby("meter", sort=False):
            s = settings[meter]
            max_gap = None if s.max_gap_minutes is None else s.max_gap_minutes * 60_000_000_000
            if kind == "cumulative":
                hours = _intervals_to_hours(_register_to_intervals(rows, s.register_max, max_gap))
            else:
                hours = _samples_to_hours(rows, max_gap, quantity(unit) == "power")
            parts.append(hours.assign(meter=meter))
        hourly = pd.concat(parts, ignore_index=True)
    hourly["unit"] = hourly["meter"].map(
        {m: STANDARD_UNIT[s.data_type] for m, s in settings.items()}
    )
    return hourly[["meter", *HOURLY_COLUMNS]].reset_index(drop=True)


def _hour_frame(meters, hours_ns, values, covered_ns, quality_rank) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "meter": meters,
            "hour_utc": pd.to_datetime(hours_ns, utc=True),
            "value": values,
            "quality": worst_quality(quality_rank),
            "coverage": np.minimum(covered_ns / HOUR_NS, 1.0),
        }
    )


def _dedupe(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """Keep the last reading given for each meter and timestamp, then sort by meter and time."""
    codes = pd.factorize(frame["meter"], sort=True)[0]
    return frame.take(_latest(codes, nanoseconds(frame[key])))


def _latest(codes: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The positions of the last reading of each meter (code) and time, by meter and time: one
    stable sort of integers, rather than hashing every row's meter name and time."""
    order = np.lexsort((times, codes))  # stable: readings of one meter and time keep their order
    codes, times = codes[order], times[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (codes[1:] != codes[:-1]) | (times[1:] != times[:-1])
    return order[last]


def _intervals_to_hours(frame: pd.DataFrame) -> pd.DataFrame:
    """Apportion interval energy to hours by overlap: E_h = sum E_i * overlap(i, h) / len(i)."""
    codes, meters = pd.factorize(frame["meter"], sort=True)
    start = nanoseconds(frame["start"])
    rows = _latest(codes, start)
    codes, start, end = codes[rows], start[rows], nanoseconds(frame["end"])[rows]
    # A later interval overlapping an earlier one of the same meter would count the same time
    # twice: drop it (and intervals of no length).
    reach = pd.Series(end).groupby(codes).cummax().to_numpy()
    keep = end > start
    keep[1:] &= (start[1:] >= reach[:-1]) | (codes[1:] != codes[:-1])
    rows = rows[keep]
    start, end, codes = start[keep], end[keep], codes[keep]
    value = frame["value"].to_numpy()[rows]
    rank = _ranks(frame["quality"])[rows]
    if len(start) == 0:
        return empty_hourly().assign(meter=meters[:0])

    # Apportioned ROWS intervals at a time, so the temporaries stay small whatever the export's
    # length; an hour split between two such parts has its sums added after.
    parts = [
        _apportion(*(a[lo : lo + ROWS] for a in (start, end, value, rank, codes)))
        for lo in range(0, len(start), ROWS)
    ]
    meter, hour, energy, covered, worst = (
        np.concatenate(column) for column in zip(*parts, strict=True)
    )
    begins = _runs(meter, hour)
    energy, covered = np.add.reduceat(energy, begins), np.add.reduceat(covered, begins)
    return _hour_frame(
        meters[meter[begins]],
        hour[begins],
        np.where(covered > 0, energy, np.nan),
        covered,
        np.maximum.reduceat(worst, begins),
    )


def _apportion(start, end, value, rank, codes) -> tuple[np.ndarray, ...]:
    """Intervals (by meter, then time) apportioned to the hours they overlap: each (meter, hour)
    with its energy, covered nanoseconds and worst quality rank."""
    first = start // HOUR_NS
    touched = (end - 1) // HOUR_NS - first + 1
    row = np.repeat(np.arange(len(start)), touched)
    step = np.arange(touched.sum()) - np.repeat(np.cumsum(touched) - touched, touched)
    hour = (first[row] + step) * HOUR_NS
    overlap = np.minimum(end[row], hour + HOUR_NS) - np.maximum(start[row], hour)
    share = value[row] * overlap / (end - start)[row]
    # Missing intervals say the hour was not covered; they add neither energy nor coverage.
    counted = rank[row] != QUALITY_RANK["missing"]
    meter = codes[row]
    # Rows run by meter, then time, so each (meter, hour) is one run of rows: reduce the runs.
    begins = _runs(meter, hour)
    energy = np.add.reduceat(np.where(counted & ~np.isnan(share), share, 0.0), begins)
    covered = np.add.reduceat(np.where(counted, overlap, 0), begins)
    worst = np.maximum.reduceat(rank[row], begins)
    return meter[begins], hour[begins], energy, covered, worst


def _runs(meter: np.ndarray, hour: np.ndarray) -> np.ndarray:
    """Where each run of one meter and hour begins."""
    return np.flatnonzero(np.r_[True, (meter[1:] != meter[:-1]) | (hour[1:] != hour[:-1])])


def _ranks(quality: pd.Series) -> np.ndarray:
    """Quality names as ranks, looked up once per distinct name."""
    codes, names = pd.factorize(quality)
    return np.array([QUALITY_RANK[n] for n in names], dtype="int64")[codes]


def _register_to_intervals(
    frame: pd.DataFrame, register_max: float | None, max_gap: int | None
) -> pd.DataFrame:
    """Difference register readings into interval energy (see the module docstring)."""
    meter = frame["meter"].iloc[0]  # before dropping blanks: a meter may have no value at all
    frame = _dedupe(frame, "time").dropna(subset=["value"])
    times, readings = nanoseconds(frame["time"]), frame["value"].to_numpy(dtype="float64")
    if len(times) < 2:  # one reading is no energy yet: the next one differences against it
        none = pd.to_datetime(times[:0], utc=True)
        return pd.DataFrame(
            {"meter": meter, "start": none, "end": none, "value": [], "quality": []}
        )
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
            "meter": meter,
            "start": pd.to_datetime(times[:-1], utc=True),
            "end": pd.to_datetime(times[1:], utc=True),
            "value": delta,
            "quality": either(estimated, "estimated", "measured"),
        }
    )


def _samples_to_hours(frame: pd.DataFrame, max_gap: int | None, integrate: bool) -> pd.DataFrame:
    """Time-weighted hourly means (or integrals) of instantaneous samples."""
    frame = _dedupe(frame, "time").dropna(subset=["value"])
    times, values = nanoseconds(frame["time"]), frame["value"].to_numpy(dtype="float64")
    if len(times) < 2:
        return empty_hourly().assign(meter=frame["meter"].iloc[:0])
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
    return _hour_frame(frame["meter"].iloc[0], hours.index.to_numpy(), value, covered_ns, rank)


def _hourly_passthrough(frame: pd.DataFrame) -> pd.DataFrame:
    """Already-hourly readings: last one per hour wins, as for every other kind."""
    frame = _dedupe(frame, "hour_utc")
    hours = nanoseconds(frame["hour_utc"])
    covered = (frame["coverage"].to_numpy(dtype="float64") * HOUR_NS).astype("int64")
    rank = frame["quality"].map(QUALITY_RANK).to_numpy()
    values = frame["value"].to_numpy(dtype="float64")
    return _hour_frame(frame["meter"].to_numpy(), hours, values, covered, rank)
