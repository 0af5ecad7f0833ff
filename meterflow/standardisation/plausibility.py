"""Plausibility of source readings: what a meter cannot have measured is refused, not stored.

A payload holding one impossible reading is refused whole (and quarantined with the line or
time of the first one), so a sender sees one clear reason and nothing half-loaded slips into the
warehouse. Checked, in the data type's standard unit:

- time: measured data types refuse readings later than now plus `FUTURE_TOLERANCE` (a wrong
  clock or time zone); forecast data types accept their own horizon;
- value: a finite number (empty means missing and is fine; `inf` and `1e308` are not);
- bounds per data type (`LIMITS`): energy and solar are not negative unless the meter is
  bidirectional, and their average power over an interval stays within the meter's rated kW;
  temperatures, occupancy, irradiance and grid carbon intensity stay within physical ranges. A
  meter overrides them in its XML: `ratedKw`, `bidirectional`, `minValue`, `maxValue`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from meterflow.common.errors import SourceDataError
from meterflow.configuration.config import Meter
from meterflow.standardisation.readings import SourceReadings, nanoseconds
from meterflow.standardisation.units import STANDARD_UNIT, quantity, to_standard

FUTURE_TOLERANCE = timedelta(hours=1)
# Solcast forecasts reach 14 days ahead; a day more for the time a forecast waits to be loaded.
FORECAST_HORIZON = timedelta(days=15)
ENERGY_TYPES = ("energy", "solar", "solar_forecast")
# A register cannot hold more than this (kWh): far above any real register, far below overflow.
REGISTER_MAX_KWH = 1e12


@dataclass(frozen=True)
class Limits:
    """Plausible values of a data type in its standard unit (energy: average kW)."""

    low: float
    high: float
    horizon: timedelta = FUTURE_TOLERANCE


LIMITS: dict[str, Limits] = {
    # 100 MW: a large campus or solar farm; set ratedKw on the meter for a tighter bound.
    "energy": Limits(0.0, 100_000.0),
    "solar": Limits(0.0, 100_000.0),
    "solar_forecast": Limits(0.0, 100_000.0, FORECAST_HORIZON),
    "temperature": Limits(-60.0, 100.0),  # inside a building, attics and cold stores included
    "outdoor_temperature": Limits(-90.0, 60.0),  # beyond the records measured on Earth
    "occupancy": Limits(0.0, 1_000_000.0),
    # Thermopile pyranometers read a few W/m2 below zero at night; clear-sky peaks stay < 1500.
    "irradiance": Limits(-25.0, 2_000.0),
    # Grid carbon intensity: 0 for an all-renewable or nuclear hour; lignite-fired power is about
    # 1,200 gCO2e/kWh, so 3,000 leaves room for any real grid and refuses unit mix-ups.
    "grid_intensity": Limits(0.0, 3_000.0),
}


def limits_of(meter: Meter) -> Limits:
    """The data type's limits with the meter's own overrides from its XML."""
    base = LIMITS[meter.data_type]
    if meter.data_type in ENERGY_TYPES:
        high = meter.rated_kw if meter.rated_kw is not None else base.high
        low = -high if meter.exports else base.low
        return Limits(low, high, base.horizon)
    low = meter.min_value if meter.min_value is not None else base.low
    high = meter.max_value if meter.max_value is not None else base.high
    return Limits(low, high, base.horizon)


def check_readings(readings: SourceReadings, meter: Meter, now: datetime) -> None:
    """Raise SourceDataError naming the first implausible reading (its line where known).
    Forecast data types may lie ahead by their horizon; the others by FUTURE_TOLERANCE."""
    (error,) = check_many([readings], [meter], now)
    if error is not None:
        raise error


def check_many(
    readings: list[SourceReadings], meters: list[Meter], now: datetime
) -> list[SourceDataError | None]:
    """check_readings of many payloads (the readings of `meters[i]` in `readings[i]`): the
    error of each, or None."""
    errors: list[SourceDataError | None] = [None] * len(readings)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(readings):
        if len(r):
            groups.setdefault((r.kind, r.unit), []).append(i)
    for (kind, unit), members in groups.items():
        frame = pd.concat(
            [readings[i].frame.assign(payload=n) for n, i in enumerate(members)], ignore_index=True
        )
        found = check_batch(kind, unit, frame, [meters[i] for i in members], now)
        for n, error in found.items():
            errors[members[n]] = error
    return errors


def check_batch(
    kind: str, unit: str, frame: pd.DataFrame, meters: list[Meter], now: datetime
) -> dict[int, SourceDataError]:
    """The first implausible reading of each payload in one vectorised pass: `frame` holds the
    readings of many payloads of one kind and unit, a `payload` column numbering them, and
    `meters[n]` is payload n's meter. Payload number -> its error."""
    errors: dict[int, SourceDataError] = {}
    if frame.empty:
        return errors
    _check_group(kind, unit, frame, meters, now, errors)
    return errors


def _check_group(kind, unit, frame, meters, now, errors) -> None:
    payload = frame["payload"].to_numpy()
    limits = [limits_of(m) for m in meters]
    low = np.array([lim.low for lim in limits])[payload]
    high = np.array([lim.high for lim in limits])[payload]
    latest = np.array([(pd.Timestamp(now) + lim.horizon).value for lim in limits])[payload]
    times = frame[next(c for c in ("start", "hour_utc", "time") if c in frame)]
    values = frame["value"].to_numpy(dtype="float64")
    present = ~np.isnan(values)
    if "quality" in frame:
        present &= (frame["quality"] != "missing").to_numpy()
    standard = to_standard(values, unit)
    rules = [
        (
            present & (nanoseconds(times) > latest),
            lambda n: (
                f"is later than now plus {_span(limits[n].horizon)} "
                f"({pd.Timestamp(now) + limits[n].horizon:%Y-%m-%dT%H:%MZ}): no meter can have "
                "measured it yet (is the source's clock or time zone right?)"
            ),
        ),
        (np.isinf(values), lambda n: "is not a finite number"),
    ]
    if kind == "cumulative":
        rules.append(
            (
                present & ((standard < 0) | (standard > REGISTER_MAX_KWH)),
                lambda n: (
                    "is not a register reading (a register counts from 0 up to at most "
                    f"{REGISTER_MAX_KWH:g} kWh)"
                ),
            )
        )
    else:
        per_interval = quantity(unit) == "energy" and kind in ("interval", "hourly")
        level = _average_kw(frame, standard, kind) if per_interval else standard
        energy = np.array([m.data_type in ENERGY_TYPES for m in meters])
        unit_of = [
            "kW" if m.data_type in ENERGY_TYPES else STANDARD_UNIT[m.data_type] for m in meters
        ]

        def below(n: int) -> str:
            m = meters[n]
            hint = ' (a meter that exports says bidirectional="true")' if energy[n] else ""
            return (
                f"is below {limits[n].low:g} {unit_of[n]}, the lowest a {m.data_type} meter "
                f"reads{hint}"
            )

        def above(n: int) -> str:
            m = meters[n]
            setting = "ratedKw" if energy[n] else "minValue and maxValue"
            return (
                f"is above {limits[n].high:g} {unit_of[n]}, the most this {m.data_type} meter "
                f"can read (set {setting} on the meter if the value is real)"
            )

        rules += [(present & (level < low), below), (present & (level > high), above)]
    failed = np.zeros(len(meters), dtype=bool)
    for bad, message in rules:
        bad = bad & ~failed[payload]
        if not bad.any():
            continue
        rows = np.flatnonzero(bad)
        first = rows[np.unique(payload[rows], return_index=True)[1]]
        for row in first:
            n = payload[row]
            errors[int(n)] = _error(frame, times, row, message(n), unit)
            failed[n] = True


def _average_kw(frame: pd.DataFrame, kwh: np.ndarray, kind: str) -> np.ndarray:
    """Energy per interval (or per hour) as the average kW it implies."""
    if kind == "hourly":
        return kwh
    hours = (frame["end"] - frame["start"]).dt.total_seconds().to_numpy() / 3600
    with np.errstate(over="ignore"):  # 1e308 kWh in 5 minutes is inf kW: refused below
        return np.divide(kwh, hours, out=kwh.copy(), where=hours > 0)


def _error(
    frame: pd.DataFrame, times: pd.Series, row: int, what: str, unit: str = ""
) -> SourceDataError:
    """`value 5 kWh at 2026-04-01T00:00Z <what>`, on the row's line where the parser knew it."""
    when = pd.Timestamp(times.iloc[row]).strftime("%Y-%m-%dT%H:%MZ")
    line = frame["line"].iloc[row] if "line" in frame else None
    value = f"{frame['value'].iloc[row]:g} {unit}".strip()
    return SourceDataError(
        f"value {value} at {when} {what}",
        line=int(line) if line is not None and not pd.isna(line) else None,
    )


def _span(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:g} h" if hours < 48 else f"{hours / 24:g} days"
