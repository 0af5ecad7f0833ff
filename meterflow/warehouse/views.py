"""Derived metrics as views, written once in portable SQL and rendered per dialect.

Only the month truncation differs between DuckDB/PostgreSQL and BigQuery; everything else is
standard SQL (CASE instead of FILTER, GREATEST, window functions), so an analyst gets the same
answers from every backend.
"""

from __future__ import annotations

from collections.abc import Callable

# kWh by how the building was used (v_energy_hourly.use_period): each hour counts once.
USE_PERIOD_SUMS = ", ".join(
    f"sum(CASE WHEN use_period = '{period}' THEN kwh ELSE 0 END) AS {period}_kwh"
    for period in ("office", "out_of_hours", "holiday", "closed")
)
MONTH: dict[str, Callable[[str], str]] = {
    "duckdb": lambda x: f"CAST(date_trunc('month', {x}) AS DATE)",
    "postgres": lambda x: f"CAST(date_trunc('month', {x}) AS DATE)",
    "bigquery": lambda x: f"DATE_TRUNC({x}, MONTH)",
}

# (name, body) in dependency order; {t:NAME} is a table reference, {month:EXPR} a month start.
VIEWS: list[tuple[str, str]] = [
    ("v_property", "SELECT * FROM {t:dim_property} WHERE valid_to IS NULL"),
    ("v_meter", "SELECT * FROM {t:dim_meter} WHERE valid_to IS NULL"),
    (
        "v_emission_factor",
        """SELECT f.* FROM {t:dim_emission_factor} f
        WHERE f.edition = (SELECT max(g.edition) FROM {t:dim_emission_factor} g
                           WHERE g.country = f.country AND g.region = f.region
                             AND g.valid_from = f.valid_from)""",
    ),
    (
        "v_energy_hourly",
        """SELECT h.participant_id, h.property_id, h.hour_utc, c.local_date, c.local_hour,
               c.weekday, c.is_holiday, c.is_office_hours,
               COALESCE(c.is_closed, FALSE) AS is_closed, c.closure_reason,
               CASE WHEN COALESCE(c.is_closed, FALSE) THEN 'closed'
                    WHEN c.is_holiday THEN 'holiday'
                    WHEN c.is_office_hours THEN 'office'
                    ELSE 'out_of_hours' END AS use_period,
               h.value AS kwh, h.coverage, h.quality
        FROM {t:fact_hourly} h JOIN {t:dim_calendar} c
          ON c.participant_id = h.participant_id AND c.property_id = h.property_id
         AND c.hour_utc = h.hour_utc
        WHERE h.data_type = 'energy'""",
    ),
    (
        "v_carbon_hourly",
        """SELECT e.participant_id, e.property_id, e.hour_utc, e.local_date, e.kwh,
               f.scope2_kg_per_kwh, f.edition AS factor_edition,
               e.kwh * f.scope2_kg_per_kwh AS kg_co2e, e.kwh * f.scope2_kg_per_kwh / 1000 AS t_co2e
        FROM {v:v_energy_hourly} e
        JOIN {v:v_property} p ON p.participant_id = e.participant_id
         AND p.property_id = e.property_id
        LEFT JOIN {v:v_emission_factor} f ON f.country = p.country AND f.region = p.region
         AND e.local_date >= f.valid_from AND (f.valid_to IS NULL OR e.local_date <= f.valid_to)""",
    ),
    (
        "v_carbon_monthly",
        """SELECT participant_id, property_id, {month:local_date} AS month, sum(kwh) AS kwh,
               sum(kg_co2e) AS kg_co2e, sum(t_co2e) AS t_co2e
        FROM {v:v_carbon_hourly} GROUP BY participant_id, property_id, {month:local_date}""",
    ),
    (
        "v_eui_daily",
        """SELECT e.participant_id, e.property_id, e.local_date, sum(e.kwh) AS kwh,
               sum(e.kwh) / p.floor_area_m2 AS kwh_per_m2
        FROM {v:v_energy_hourly} e JOIN {v:v_property} p ON p.participant_id = e.participant_id
         AND p.property_id = e.property_id
        GROUP BY e.participant_id, e.property_id, e.local_date, p.floor_area_m2""",
    ),
    (
        "v_eui_monthly",
        """SELECT m.participant_id, m.property_id, m.month, m.kwh, m.kwh / p.floor_area_m2
                   AS kwh_per_m2,
               sum(m.kwh) OVER (PARTITION BY m.participant_id, m.property_id ORDER BY m.month
                                ROWS BETWEEN 11 PRECEDING AND CURRENT ROW) / p.floor_area_m2
                   AS rolling_12m_kwh_per_m2,
               count(*) OVER (PARTITION BY m.participant_id, m.property_id ORDER BY m.month
                              ROWS BETWEEN 11 PRECEDING AND CURRENT ROW) AS rolling_months
        FROM (SELECT participant_id, property_id, {month:local_date} AS month, sum(kwh) AS kwh
              FROM {v:v_energy_hourly}
              GROUP BY participant_id, property_id, {month:local_date}) m
        JOIN {v:v_property} p ON p.participant_id = m.participant_id
         AND p.property_id = m.property_id""",
    ),
    (
        "v_office_hours_monthly",
        """SELECT participant_id, property_id, {month:local_date} AS month, """
        + USE_PERIOD_SUMS
        + """, sum(kwh) AS kwh
        FROM {v:v_energy_hourly} GROUP BY participant_id, property_id, {month:local_date}""",
    ),
    (
        "v_weather_hourly",
        """SELECT participant_id, property_id, hour_utc,
               max(CASE WHEN data_type = 'outdoor_temperature' THEN value END) AS outside_c,
               max(CASE WHEN data_type = 'irradiance' THEN value END) AS irradiance_w_m2
        FROM {t:fact_hourly} WHERE data_type IN ('outdoor_temperature', 'irradiance')
        GROUP BY participant_id, property_id, hour_utc""",
    ),
    (
        "v_temperature_delta",
        """SELECT i.participant_id, i.property_id, i.hour_utc, i.value AS inside_c, w.outside_c,
               i.value - w.outside_c AS delta_c
        FROM {t:fact_hourly} i JOIN {v:v_weather_hourly} w ON w.participant_id = i.participant_id
         AND w.property_id = i.property_id AND w.hour_utc = i.hour_utc
        WHERE i.data_type = 'temperature' AND w.outside_c IS NOT NULL""",
    ),
    (
        "v_degree_days",
        """SELECT c.participant_id, c.property_id, c.local_date, count(*) AS hours,
               avg(w.outside_c) AS mean_outside_c, p.degree_day_base_c,
               GREATEST(p.degree_day_base_c - avg(w.outside_c), 0) AS hdd,
               GREATEST(avg(w.outside_c) - p.degree_day_base_c, 0) AS cdd
        FROM {v:v_weather_hourly} w
        JOIN {t:dim_calendar} c ON c.participant_id = w.participant_id
         AND c.property_id = w.property_id AND c.hour_utc = w.hour_utc
        JOIN {v:v_property} p ON p.participant_id = c.participant_id
         AND p.property_id = c.property_id
        WHERE w.outside_c IS NOT NULL
        GROUP BY c.participant_id, c.property_id, c.local_date, p.degree_day_base_c""",
    ),
    (
        "v_energy_per_occupant_daily",
        """SELECT e.participant_id, e.property_id, e.local_date, sum(e.kwh) AS kwh,
               avg(CASE WHEN e.is_office_hours THEN o.value END) AS mean_office_occupancy,
               sum(e.kwh) / NULLIF(avg(CASE WHEN e.is_office_hours THEN o.value END), 0)
                   AS kwh_per_occupant
        FROM {v:v_energy_hourly} e
        JOIN {t:fact_hourly} o ON o.participant_id = e.participant_id
         AND o.property_id = e.property_id AND o.hour_utc = e.hour_utc
         AND o.data_type = 'occupancy'
        GROUP BY e.participant_id, e.property_id, e.local_date""",
    ),
    (
        "v_completeness_monthly",
        """SELECT c.participant_id, c.property_id, d.data_type, {month:c.local_date} AS month,
               count(*) AS hours, sum(COALESCE(f.coverage, 0)) / count(*) AS completeness
        FROM {t:dim_calendar} c
        JOIN (SELECT participant_id, property_id, data_type, min(hour_utc) AS first_hour,
                     max(hour_utc) AS last_hour
              FROM {t:fact_hourly} GROUP BY participant_id, property_id, data_type) d
          ON d.participant_id = c.participant_id AND d.property_id = c.property_id
         AND c.hour_utc >= d.first_hour AND c.hour_utc <= d.last_hour
        LEFT JOIN {t:fact_hourly} f ON f.participant_id = c.participant_id
         AND f.property_id = c.property_id AND f.data_type = d.data_type
         AND f.hour_utc = c.hour_utc
        GROUP BY c.participant_id, c.property_id, d.data_type, {month:c.local_date}""",
    ),
]


def render(body: str, dialect: str, name_of: Callable[[str], str]) -> str:
    """Fill in table names and month truncations for one dialect."""
    out, rest = [], body
    while "{" in rest:
        before, _, tail = rest.partition("{")
        token, _, rest = tail.partition("}")
        kind, _, arg = token.partition(":")
        out.append(before)
        out.append(MONTH[dialect](arg) if kind == "month" else name_of(arg))
    return "".join(out) + rest


def view_statements(dialect: str, name_of: Callable[[str], str]) -> list[str]:
    """Statements that (re)create every view, dependants dropped first."""
    if dialect == "bigquery":
        return [
            f"CREATE OR REPLACE VIEW {name_of(n)} AS {render(b, dialect, name_of)}"
            for n, b in VIEWS
        ]
    drops = [f"DROP VIEW IF EXISTS {name_of(n)} CASCADE" for n, _ in reversed(VIEWS)]
    creates = [f"CREATE VIEW {name_of(n)} AS {render(b, dialect, name_of)}" for n, b in VIEWS]
    return drops + creates
