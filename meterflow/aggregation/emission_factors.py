"""Versioned emission factors: kg CO2-e per kWh by country, region and period, per edition.

The shipped table is `configs/emission_factors.csv` (Australian NGA scope 2, by state); more
files in `configs/emission_factors.d/*.csv` extend or supersede it. A factor is never changed in
place: the same (country, region, valid_from, edition) with a different value is refused, and a
revision is published as a new edition, which the carbon views then prefer.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pandas as pd

from meterflow.common.errors import MeterflowError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
KEY = ["country", "region", "valid_from", "edition"]


def read_factors(configs: Path | None = None) -> pd.DataFrame:
    configs = configs or CONFIGS
    paths = [configs / "emission_factors.csv", *sorted(configs.glob("emission_factors.d/*.csv"))]
    return _read(tuple((p, p.stat().st_mtime_ns) for p in paths)).copy()


@cache
def _read(files: tuple[tuple[Path, int], ...]) -> pd.DataFrame:
    """The factor files' rows, read once per version of the files (every load asks)."""
    frame = pd.concat([pd.read_csv(p, dtype={"edition": str}) for p, _ in files], ignore_index=True)
    for column in ("valid_from", "valid_to"):
        frame[column] = pd.to_datetime(frame[column]).dt.date
    clashes = frame[frame.duplicated(KEY, keep=False)].drop_duplicates([*KEY, "scope2_kg_per_kwh"])
    if clashes.duplicated(KEY).any():
        raise MeterflowError(f"emission factor files disagree for {clashes[KEY].iloc[0].tolist()}")
    return frame.drop_duplicates(KEY)


def refuse_silent_changes(new: pd.DataFrame, stored: pd.DataFrame) -> None:
    """Raise if a stored factor would be overwritten with another value under the same edition."""
    if stored.empty:
        return
    stored = stored.assign(valid_from=pd.to_datetime(stored["valid_from"]).dt.date)
    both = new.merge(stored, on=KEY, suffixes=("", "_stored"))
    changed = both[(both["scope2_kg_per_kwh"] - both["scope2_kg_per_kwh_stored"]).abs() > 1e-12]
    if not changed.empty:
        row = changed.iloc[0]
        raise MeterflowError(
            f"emission factor {row.country}/{row.region} from {row.valid_from} edition "
            f"{row.edition!r} would change from {row.scope2_kg_per_kwh_stored} to "
            f"{row.scope2_kg_per_kwh}: publish the revision as a new edition instead"
        )
