"""The shapes readings take: source readings as parsed, and standardised hourly readings.

Standardised hourly readings, one row per meter-hour (the columns every later stage relies on):

| column   | type                  | meaning                                                     |
|----------|-----------------------|-------------------------------------------------------------|
| hour_utc | datetime64[ns, UTC]   | start of the hour                                           |
| value    | float64               | in `unit`; energy is the kWh within the hour                |
| unit     | str                   | the data type's standard unit (kWh, degC, persons, W/m2)    |
| quality  | str                   | worst of what fed the hour: measured < interpolated <       |
|          |                       | estimated < missing                                         |
| coverage | float64               | fraction of the hour the source covered, 0..1               |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

QUALITIES = ("measured", "interpolated", "estimated", "missing")
QUALITY_RANK = {name: rank for rank, name in enumerate(QUALITIES)}
HOURLY_COLUMNS = ["hour_utc", "value", "unit", "quality", "coverage"]

ReadingKind = Literal["interval", "cumulative", "instantaneous", "hourly"]


@dataclass(frozen=True)
class SourceReadings:
    """Readings as a source gave them, timestamps already in UTC, values in `unit`.

    Columns by kind:
    - interval: start, end, value, quality (energy per interval [start, end))
    - cumulative: time, value (register readings)
    - instantaneous: time, value (samples of power, temperature, occupancy, irradiance)
    - hourly: hour_utc, value, quality, coverage (already standardised, from a push)
    """

    kind: ReadingKind
    unit: str
    frame: pd.DataFrame

    def __len__(self) -> int:
        return len(self.frame)


def empty_hourly() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "hour_utc": pd.Series([], dtype="datetime64[ns, UTC]"),
            "value": pd.Series([], dtype="float64"),
            "unit": pd.Series([], dtype="str"),
            "quality": pd.Series([], dtype="str"),
            "coverage": pd.Series([], dtype="float64"),
        }
    )


def worst_quality(ranks: np.ndarray) -> np.ndarray:
    """Quality names for an array of ranks."""
    return np.asarray(QUALITIES, dtype=object)[ranks]
