"""Extraction: an interval's energy, carbon and completeness for one meter, from the warehouse."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd

from meterflow.common.timeutil import parse_zone, warehouse_time
from meterflow.configuration.config import Meter, Participant
from meterflow.jobs.periods import Period
from meterflow.warehouse.backend import Warehouse


@dataclass(frozen=True)
class Extraction:
    energy_kwh: float
    carbon_t: float | None
    factor_kg_per_kwh: float | None
    factor_edition: str | None
    hours_expected: int
    hours_complete: int
    hours_estimated: int
    # Market-based (dual reporting; the submitted amount stays location-based, see docs/mrv.md)
    market_carbon_t: float | None = None
    market_basis: str | None = None

    @property
    def coverage(self) -> float:
        return self.hours_complete / self.hours_expected if self.hours_expected else 0.0


def record_id(participant_id: str, device: str, period: Period, schema_version: int) -> str:
    """Deterministic: the same participant, device, interval and schema give the same id."""
    key = f"{participant_id}|{device}|{period.start.isoformat()}|{schema_version}"
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def extract(wh: Warehouse, participant: Participant, meter: Meter, period: Period) -> Extraction:
    """Sum the meter's hours in the period; carbon with the factor in force at its start.

    An hour is complete when it covers the whole hour with a usable value; energy is the sum of
    every hour that has a value. Carbon (t) = kWh x factor (kg/kWh) / 1000.
    """
    hours = wh.query(
        f"SELECT value, quality, coverage FROM {wh.table('fact_meter_hourly')} "
        "WHERE participant_id = ? AND meter_id = ? AND hour_utc >= ? AND hour_utc < ?",
        [participant.id, meter.id, warehouse_time(period.start), warehouse_time(period.end)],
    )
    complete = (hours["coverage"] >= 0.999) & (hours["quality"] != "missing")
    complete &= hours["value"].notna()
    energy = float(hours["value"].sum())
    prop = participant.property(meter.property_id)
    local_day = period.start.astimezone(parse_zone(prop.timezone)).date()
    factor = wh.query(
        f"SELECT scope2_kg_per_kwh, edition FROM {wh.table('v_emission_factor')} "
        "WHERE country = ? AND region = ? AND valid_from <= ? "
        "AND (valid_to IS NULL OR valid_to >= ?)",
        [prop.country, prop.region or "", local_day, local_day],
    )
    kg = float(factor["scope2_kg_per_kwh"].iloc[0]) if len(factor) else None
    market_kg_per_kwh, market_basis = _market_rate(wh, participant.id, prop.id, period)
    return Extraction(
        energy_kwh=energy,
        carbon_t=energy * kg / 1000 if kg is not None else None,
        factor_kg_per_kwh=kg,
        factor_edition=str(factor["edition"].iloc[0]) if len(factor) else None,
        hours_expected=len(period.hours),
        hours_complete=int(complete.sum()),
        hours_estimated=int((complete & (hours["quality"] == "estimated")).sum()),
        market_carbon_t=energy * market_kg_per_kwh / 1000
        if market_kg_per_kwh is not None
        else None,
        market_basis=market_basis,
    )


def _market_rate(
    wh: Warehouse, participant_id: str, property_id: str, period: Period
) -> tuple[float | None, str | None]:
    """The property's market-based kg/kWh over the period (its contract's instruments and the
    rest's rate, as v_carbon_hourly counts them), applied to the meter pro rata; None when an
    hour has no factor or the property used no energy."""
    rows = wh.query(
        f"SELECT sum(kwh) AS kwh, sum(market_kg_co2e) AS kg, "
        f"sum(CASE WHEN market_kg_co2e IS NULL AND kwh IS NOT NULL THEN 1 ELSE 0 END) AS unknown, "
        f"min(market_basis) AS basis, max(market_basis) AS other "
        f"FROM {wh.table('v_carbon_hourly')} WHERE participant_id = ? AND property_id = ? "
        "AND hour_utc >= ? AND hour_utc < ?",
        [participant_id, property_id, warehouse_time(period.start), warehouse_time(period.end)],
    ).iloc[0]
    if pd.isna(rows["kwh"]) or rows["kwh"] == 0 or rows["unknown"] or pd.isna(rows["kg"]):
        return None, None
    bases = sorted({rows["basis"], rows["other"]} - {None})
    return float(rows["kg"]) / float(rows["kwh"]), " + ".join(bases) or None
