"""Questions the demo and the report ask of any backend."""

from __future__ import annotations

import pandas as pd

from meterflow.common.timeutil import HourWindow, warehouse_time
from meterflow.warehouse.backend import Warehouse


def property_summary(
    wh: Warehouse, window: HourWindow, participant_id: str | None = None
) -> pd.DataFrame:
    """Per property over the window (of every participant, or one): hours, kWh, kWh per m2,
    solar, outside temperature, coverage. Rounded here, not in SQL: PostgreSQL has no
    round(double precision, digits)."""
    only = "AND f.participant_id = ?" if participant_id else ""
    energy = "sum(CASE WHEN f.data_type = 'energy' THEN f.value END)"
    rows = wh.query(
        f"""
        SELECT f.participant_id AS participant, f.property_id AS property, p.timezone,
               count(DISTINCT f.hour_utc) AS hours, {energy} AS energy_kwh,
               {energy} / p.floor_area_m2 AS kwh_per_m2,
               sum(CASE WHEN f.data_type = 'solar' THEN f.value END) AS solar_kwh,
               avg(CASE WHEN f.data_type = 'outdoor_temperature' THEN f.value END) AS outside_c,
               avg(CASE WHEN f.data_type = 'energy' THEN f.coverage END) AS coverage,
               avg(CASE WHEN f.data_type = 'energy'
                        THEN CASE WHEN f.quality = 'measured' THEN 1.0 ELSE 0.0 END END)
                   AS measured_share
        FROM {wh.table("fact_hourly")} f
        JOIN {wh.table("v_property")} p
          ON p.participant_id = f.participant_id AND p.property_id = f.property_id
        WHERE f.hour_utc >= ? AND f.hour_utc < ? {only}
        GROUP BY f.participant_id, f.property_id, p.timezone, p.floor_area_m2
        ORDER BY participant, property
        """,
        [
            warehouse_time(window.start),
            warehouse_time(window.end),
            *([participant_id] * bool(only)),
        ],
    )
    digits = {"energy_kwh": 1, "kwh_per_m2": 2, "solar_kwh": 1, "outside_c": 1, "coverage": 3}
    return rows.astype(dict.fromkeys(digits, "float64") | {"measured_share": "float64"}).round(
        digits | {"measured_share": 3}
    )
