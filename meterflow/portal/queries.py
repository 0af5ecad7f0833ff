"""What a participant's API and dashboard read from the warehouse. Every statement is bound to
one participant by a parameter (never by text put into SQL), so no filter can reach another's
rows; identifiers a caller sends are parameters too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import pandas as pd

from meterflow.common.errors import MeterflowError
from meterflow.common.timeutil import HOUR, warehouse_time
from meterflow.configuration.config import DEFAULT_AGGREGATION
from meterflow.warehouse.backend import Warehouse
from meterflow.warehouse.schema import TYPES
from meterflow.warehouse.views import TRUNCATE

Granularity = Literal["hour", "day", "month"]
Zone = Literal["local", "utc"]
# Hours rolled up into days or months: additive data types are summed, the others averaged.
ROLLUP = {"sum": "sum", "mean": "avg", "max": "max", "min": "min"}
UTC_DATE = {
    "duckdb": lambda x: f"CAST({x} AS DATE)",
    "postgres": lambda x: f"CAST({x} AS DATE)",
    "bigquery": lambda x: f"DATE({x})",
}
NEXT_HOUR = {
    "duckdb": lambda x: f"{x} + INTERVAL 1 HOUR",
    "postgres": lambda x: f"{x} + INTERVAL '1 hour'",
    "bigquery": lambda x: f"TIMESTAMP_ADD({x}, INTERVAL 1 HOUR)",
}
PAGE_ROWS = 10_000  # the most rows one response holds; more are paged with `offset`


class NotFound(MeterflowError):
    """The participant has no such property, meter or record (or the caller cannot see it)."""


@dataclass(frozen=True)
class MetricQuery:
    """Values of one data type over [start, end) for a participant's properties (or one
    property, or one meter), by hour, local or UTC day, or month."""

    data_type: str
    start: datetime
    end: datetime
    granularity: Granularity = "day"
    zone: Zone = "local"
    property_id: str | None = None
    meter_id: str | None = None
    limit: int = PAGE_ROWS
    offset: int = 0


def properties(wh: Warehouse, participant_id: str) -> pd.DataFrame:
    return wh.query(
        f"""SELECT property_id, name, timezone, country, region, floor_area_m2, office_days,
                   office_start, office_end
            FROM {wh.table("v_property")} WHERE participant_id = ? ORDER BY property_id""",
        [participant_id],
    )


def meters(wh: Warehouse, participant_id: str) -> pd.DataFrame:
    return wh.query(
        f"""SELECT meter_id, property_id, name, data_type, unit, connector_type, role
            FROM {wh.table("v_meter")} WHERE participant_id = ? ORDER BY meter_id""",
        [participant_id],
    )


def metrics(wh: Warehouse, participant_id: str, q: MetricQuery) -> pd.DataFrame:
    """One row per property (or the meter) and period: value, unit, hours with data, their
    mean coverage, and how many of them were estimated."""
    if q.data_type not in DEFAULT_AGGREGATION:
        raise NotFound(f"no data type {q.data_type!r}; one of {', '.join(DEFAULT_AGGREGATION)}")
    if q.meter_id is not None:
        check_owned(wh, participant_id, "v_meter", "meter_id", q.meter_id, "meter")
        source = f"""{wh.table("fact_meter_hourly")} f JOIN {wh.table("v_meter")} m
              ON m.participant_id = f.participant_id AND m.meter_id = f.meter_id"""
        owner, key = "m.property_id", "f.meter_id"
        where, params = "f.meter_id = ?", [q.meter_id]
    else:
        source = f"{wh.table('fact_hourly')} f"
        owner, key = "f.property_id", "f.property_id"
        where, params = "TRUE", []
        if q.property_id is not None:
            check_owned(wh, participant_id, "v_property", "property_id", q.property_id, "property")
            where, params = "f.property_id = ?", [q.property_id]
    integer = TYPES[wh.dialect]["int"]
    estimated = f"CAST({{}}(CASE WHEN f.quality = 'estimated' THEN 1 ELSE 0 END) AS {integer})"
    if q.granularity == "hour":  # a row per hour as stored: nothing to roll up
        columns = f"""f.hour_utc AS period, f.value, f.unit, 1 AS hours, f.coverage,
               {estimated.format("")} AS hours_estimated, c.local_date, c.local_hour"""
        grouped = ""
    else:
        period = _period(wh.dialect, q.granularity, q.zone)
        rollup = ROLLUP[DEFAULT_AGGREGATION[q.data_type]]
        columns = f"""{period} AS period, {rollup}(f.value) AS value, min(f.unit) AS unit,
               count(*) AS hours, avg(f.coverage) AS coverage,
               {estimated.format("sum")} AS hours_estimated"""
        grouped = f"GROUP BY {key}, {period}"
    sql = f"""
        SELECT {key} AS id, {columns}
        FROM {source}
        JOIN {wh.table("dim_calendar")} c ON c.participant_id = f.participant_id
         AND c.property_id = {owner} AND c.hour_utc = f.hour_utc
        WHERE f.participant_id = ? AND f.data_type = ? AND f.hour_utc >= ? AND f.hour_utc < ?
          AND {where}
        {grouped}
        ORDER BY id, period
        LIMIT {int(q.limit)} OFFSET {int(q.offset)}"""
    window = [warehouse_time(q.start), warehouse_time(q.end)]
    rows = wh.query(sql, [participant_id, q.data_type, *window, *params])
    return _dates(rows, "local_date", *(["period"] if q.granularity != "hour" else []))


def _dates(rows: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Date columns as dates: some drivers hand DATE back as a midnight timestamp."""
    for column in columns:
        if column in rows and pd.api.types.is_datetime64_any_dtype(rows[column]):
            rows[column] = rows[column].dt.date
    return rows


def _period(dialect: str, granularity: Literal["day", "month"], zone: Zone) -> str:
    day = "c.local_date" if zone == "local" else UTC_DATE[dialect]("f.hour_utc")
    return day if granularity == "day" else TRUNCATE[dialect]("month", day)


def check_owned(
    wh: Warehouse, participant_id: str, view: str, column: str, value: str, what: str
) -> None:
    """NotFound unless the participant has the property or meter."""
    found = wh.query(
        f"SELECT {column} FROM {wh.table(view)} WHERE participant_id = ? AND {column} = ?",
        [participant_id, value],
    )
    if found.empty:
        raise NotFound(f"participant {participant_id} has no {what} {value!r}")


def carbon_monthly(wh: Warehouse, participant_id: str) -> pd.DataFrame:
    return _monthly(
        wh,
        participant_id,
        "v_carbon_monthly",
        "kwh, kg_co2e, t_co2e, market_kg_co2e, market_t_co2e",
    )


def _monthly(wh: Warehouse, participant_id: str, view: str, columns: str) -> pd.DataFrame:
    return _by_property(wh, participant_id, view, "month", columns)


def _by_property(
    wh: Warehouse, participant_id: str, view: str, period: str, columns: str
) -> pd.DataFrame:
    """The participant's rows of a view by property and local day or month."""
    rows = wh.query(
        f"""SELECT property_id, {period}, {columns} FROM {wh.table(view)}
            WHERE participant_id = ? ORDER BY property_id, {period}""",
        [participant_id],
    )
    return _dates(rows, period)


def degree_days(wh: Warehouse, participant_id: str) -> pd.DataFrame:
    """Heating and cooling degree days per property and local day (outside mean against the
    property's base)."""
    columns = "hours, mean_outside_c, degree_day_base_c, hdd, cdd"
    return _by_property(wh, participant_id, "v_degree_days", "local_date", columns)


def energy_per_occupant(wh: Warehouse, participant_id: str) -> pd.DataFrame:
    """kWh per mean office-hours occupant, per property and local day."""
    columns = "kwh, mean_office_occupancy, kwh_per_occupant"
    return _by_property(wh, participant_id, "v_energy_per_occupant_daily", "local_date", columns)


def eui_monthly(wh: Warehouse, participant_id: str) -> pd.DataFrame:
    columns = "kwh, kwh_per_m2, rolling_12m_kwh_per_m2, rolling_months"
    return _monthly(wh, participant_id, "v_eui_monthly", columns)


def meter_quality(wh: Warehouse, participant_id: str) -> pd.DataFrame:
    """Per meter: first and last hour held, hours held, hours missing between them, mean
    coverage and estimated hours."""
    integer = TYPES[wh.dialect]["int"]
    return wh.query(
        f"""SELECT meter_id, data_type, min(hour_utc) AS first_hour, max(hour_utc) AS last_hour,
                   count(*) AS hours, avg(coverage) AS coverage,
                   CAST(sum(CASE WHEN quality = 'estimated' THEN 1 ELSE 0 END) AS {integer})
                       AS hours_estimated,
                   CAST(sum(CASE WHEN quality = 'missing' OR value IS NULL THEN 1 ELSE 0 END)
                       AS {integer}) AS hours_missing
            FROM {wh.table("fact_meter_hourly")} WHERE participant_id = ?
            GROUP BY meter_id, data_type ORDER BY meter_id""",
        [participant_id],
    )


def meter_gaps(wh: Warehouse, participant_id: str, limit: int = 1000) -> pd.DataFrame:
    """Each run of hours with no value between two hours that have one, per meter: [start,
    end) in UTC and its length in hours (the hours after a meter's last value are not a gap
    but silence)."""
    held = f"""SELECT meter_id, hour_utc,
                      LAG(hour_utc) OVER (PARTITION BY meter_id ORDER BY hour_utc) AS previous
               FROM {wh.table("fact_meter_hourly")}
               WHERE participant_id = ? AND value IS NOT NULL"""
    rows = wh.query(
        f"""SELECT meter_id, {NEXT_HOUR[wh.dialect]("previous")} AS gap_start, hour_utc AS gap_end
            FROM ({held}) h
            WHERE previous IS NOT NULL AND hour_utc > {NEXT_HOUR[wh.dialect]("previous")}
            ORDER BY meter_id, gap_start LIMIT {int(limit)}""",
        [participant_id],
    )
    span = pd.to_datetime(rows.gap_end) - pd.to_datetime(rows.gap_start)
    return rows.assign(hours=(span / pd.Timedelta(hours=1)).astype("int64"))


def mrv_records(wh: Warehouse, participant_id: str) -> pd.DataFrame:
    """The latest revision of each MRV record: status, reasons and Guardian document id."""
    table = wh.table("mrv_record")
    return wh.query(
        f"""SELECT r.record_id, r.revision, r.meter_id, r.period_start_utc, r.period_end_utc,
                   r.energy_kwh, r.carbon_t, r.coverage, r.status, r.reasons, r.document_id,
                   r.updated_utc
            FROM {table} r
            JOIN (SELECT record_id, max(revision) AS revision FROM {table}
                  WHERE participant_id = ? GROUP BY record_id) latest
              ON latest.record_id = r.record_id AND latest.revision = r.revision
            WHERE r.participant_id = ?
            ORDER BY r.meter_id, r.period_start_utc""",
        [participant_id, participant_id],
    )


def office_hours_monthly(wh: Warehouse, participant_id: str) -> pd.DataFrame:
    """Energy in office hours, out of hours and on holidays, per property and local month."""
    columns = "office_kwh, out_of_hours_kwh, holiday_kwh, kwh"
    return _monthly(wh, participant_id, "v_office_hours_monthly", columns)


def data_span(wh: Warehouse, participant_id: str) -> tuple[datetime, datetime] | None:
    """The first hour and the end of the last hour the warehouse holds for the participant."""
    found = wh.query(
        f"""SELECT min(hour_utc) AS first_hour, max(hour_utc) AS last_hour
            FROM {wh.table("fact_hourly")} WHERE participant_id = ?""",
        [participant_id],
    )
    first, last = found.first_hour.iloc[0], found.last_hour.iloc[0]
    if pd.isna(first):
        return None
    return _aware(first), _aware(last) + HOUR


def _aware(moment: pd.Timestamp) -> datetime:
    stamp = pd.Timestamp(moment)
    return (
        stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    ).to_pydatetime()
