"""Versioned emission factors: kg CO2-e per kWh by country, region, method and period.

The shipped tables are `configs/emission_factors.csv` (Australia, NGA) and
`configs/emission_factors.d/*.csv` (one file per publication: UK, US, EU, New Zealand, residual
mixes); a participant's operator may add files there. Every row names its publication, edition,
licence and where the number was read (`source`). `method` is `location` (grid average) or
`residual` (residual mix, for market-based scope 2); `region` is empty for a country-wide factor.
A factor is never changed in place: the same (country, region, valid_from, edition) with a
different value is refused, and a revision is published as a new edition, which the carbon views
then prefer.
"""

from __future__ import annotations

from datetime import date
from functools import cache
from pathlib import Path

import pandas as pd

from meterflow.common.errors import MeterflowError
from meterflow.configuration.config import Participant, Property

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
KEY = ["country", "region", "valid_from", "edition"]
COLUMNS = [
    "country", "region", "method", "valid_from", "valid_to", "edition", "scope2_kg_per_kwh",
    "scope3_kg_per_kwh", "publication", "licence", "source",
]  # fmt: skip
REQUIRED = ["country", "method", "valid_from", "edition", "scope2_kg_per_kwh", "publication",
            "licence", "source"]  # fmt: skip
METHODS = ("location", "residual")


def read_factors(configs: Path | None = None) -> pd.DataFrame:
    configs = configs or CONFIGS
    paths = [configs / "emission_factors.csv", *sorted(configs.glob("emission_factors.d/*.csv"))]
    return _read(tuple((p, p.stat().st_mtime_ns) for p in paths)).copy()


@cache
def _read(files: tuple[tuple[Path, int], ...]) -> pd.DataFrame:
    """The factor files' rows, read once per version of the files (every load asks)."""
    frame = pd.concat([_read_file(p) for p, _ in files], ignore_index=True)
    for column in ("valid_from", "valid_to"):
        frame[column] = pd.to_datetime(frame[column]).dt.date
    clashes = frame[frame.duplicated(KEY, keep=False)].drop_duplicates([*KEY, "scope2_kg_per_kwh"])
    if clashes.duplicated(KEY).any():
        raise MeterflowError(f"emission factor files disagree for {clashes[KEY].iloc[0].tolist()}")
    frame = frame.drop_duplicates(KEY)
    _refuse_overlaps(frame)
    return frame


def _refuse_overlaps(frame: pd.DataFrame) -> None:
    """Two periods of one country, region and method must not overlap (editions of the same
    period are revisions, the latest wins): an hour would get two factors."""
    periods = frame.drop_duplicates(["country", "region", "method", "valid_from"])
    periods = periods.sort_values(["country", "region", "method", "valid_from"])
    after = periods.groupby(["country", "region", "method"])["valid_from"].shift(-1)
    overlap = periods[after.notna() & (periods["valid_to"].isna() | (periods["valid_to"] >= after))]
    if not overlap.empty:
        row = overlap.iloc[0]
        where = f"{row.country}/{row.region or '(country)'} {row.method}"
        raise MeterflowError(
            f"emission factors for {where} from {row.valid_from} ({row.edition}) run into the "
            f"next period: end it (valid_to) before the next one starts"
        )


def _read_file(path: Path) -> pd.DataFrame:
    """One factor file, refused with its name and line when a column or a required value is
    missing or a method unknown: a factor without its source is not one to report with."""
    text = {c: str for c in ("country", "region", "method", "edition", "publication", "licence")}
    frame = pd.read_csv(path, dtype=text, keep_default_na=False, na_values={"valid_to": [""]})
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise MeterflowError(f"{path}: missing column(s) {', '.join(missing)}")
    for column in REQUIRED:
        empty = frame[frame[column].astype(str).str.strip() == ""]
        if not empty.empty:
            raise MeterflowError(f"{path}, line {empty.index[0] + 2}: no {column}")
    unknown = frame[~frame["method"].isin(METHODS)]
    if not unknown.empty:
        line, method = unknown.index[0] + 2, unknown["method"].iloc[0]
        raise MeterflowError(f"{path}, line {line}: method {method!r} is not one of {METHODS}")
    frame["scope3_kg_per_kwh"] = pd.to_numeric(frame["scope3_kg_per_kwh"].replace("", None))
    return frame[COLUMNS]


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


def factor_gaps(
    participant: Participant, on: date, factors: pd.DataFrame | None = None
) -> list[str]:
    """Warnings for properties with no factor in force on `on`: their carbon will be NULL
    (location) or fall back to the grid average (market, without a residual mix)."""
    factors = read_factors() if factors is None else factors
    in_force = factors[
        (factors["valid_from"] <= on) & (factors["valid_to"].isna() | (factors["valid_to"] >= on))
    ]
    warnings = []
    for prop in participant.properties:
        place = f"{prop.country}/{prop.region}" if prop.region else prop.country
        mine = in_force[
            (in_force["country"] == prop.country) & in_force["region"].isin(["", prop.region or ""])
        ]
        if not (mine["method"] == "location").any():
            warnings.append(
                f"property {prop.id}: no emission factor for {place} on {on}: its carbon will "
                "be NULL (not zero) until a factor table covers it (configs/emission_factors.d)"
            )
        elif not (mine["method"] == "residual").any() and not _supplier_rate(prop, on):
            warnings.append(
                f"property {prop.id}: no residual mix for {place} on {on}: market-based carbon "
                "counts energy no contract covers at the grid average"
            )
    return warnings


def _supplier_rate(prop: Property, on: date) -> bool:
    """Whether the contract in force on `on` prices what it leaves at the supplier's rate."""
    return any(
        c.start <= on and (c.end is None or on < c.end) and c.supplier_kg_per_kwh is not None
        for c in prop.supply
    )
