"""Derived metrics as views, written once in portable SQL and rendered per dialect.

Only the month and year truncations differ between DuckDB/PostgreSQL and BigQuery; the rest is
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
# Period starts per dialect: {month:EXPR} and {year:EXPR} in a view body.
TRUNCATE: dict[str, Callable[[str, str], str]] = {
    "duckdb": lambda unit, x: f"CAST(date_trunc('{unit}', {x}) AS DATE)",
    "postgres": lambda unit, x: f"CAST(date_trunc('{unit}', {x}) AS DATE)",
    "bigquery": lambda unit, x: f"DATE_TRUNC({x}, {unit.upper()})",
}
# The factor of a property's country and region (region '' is country-wide), latest edition.
_FACTOR_JOIN = """LEFT JOIN {{v:v_emission_factor}} {a} ON {a}.country = p.country
         AND {a}.region = COALESCE(p.region, '') AND {a}.method = '{method}'
         AND e.local_date >= {a}.valid_from
         AND ({a}.valid_to IS NULL OR e.local_date <= {a}.valid_to)
        LEFT JOIN {{v:v_emission_factor}} {a}c ON {a}c.country = p.country AND {a}c.region = ''
         AND {a}c.method = '{method}' AND e.local_date >= {a}c.valid_from
         AND ({a}c.valid_to IS NULL OR e.local_date <= {a}c.valid_to)"""

# (name, body) in dependency order; {t:NAME} is a table, {v:NAME} a view, {month:EXPR} and
# {year:EXPR} period starts.
VIEWS: list[tuple[str, str]] = [
    ("v_property", "SELECT * FROM {t:dim_property} WHERE valid_to IS NULL"),
    ("v_meter", "SELECT * FROM {t:dim_meter} WHERE valid_to IS NULL"),
    (
        "v_emission_factor",
        """SELECT f.country, f.region, COALESCE(f.method, 'location') AS method, f.valid_from,
               f.valid_to, f.edition, f.scope2_kg_per_kwh, f.scope3_kg_per_kwh, f.publication,
               f.licence, f.source
        FROM {t:dim_emission_factor} f
        WHERE f.edition = (SELECT max(g.edition) FROM {t:dim_emission_factor} g
                           WHERE g.country = f.country AND g.region = f.region
                             AND COALESCE(g.method, 'location') = COALESCE(f.method, 'location')
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
        # The energy each contractual instrument covers, hour by hour: a share of the hour, or
        # its MWh per period spread over the period's consumption pro rata (at most all of it).
        "v_supply_covered_hourly",
        """SELECT e.participant_id, e.property_id, e.hour_utc, s.valid_from, s.seq,
               s.instrument, s.scheme, s.kg_per_kwh,
               CASE WHEN s.share IS NOT NULL THEN e.kwh * s.share
                    WHEN s.mwh * 1000 >= sum(e.kwh) OVER w THEN e.kwh
                    ELSE e.kwh * s.mwh * 1000 / sum(e.kwh) OVER w END AS covered_kwh
        FROM {v:v_energy_hourly} e JOIN {t:dim_supply} s ON s.participant_id = e.participant_id
         AND s.property_id = e.property_id AND s.seq > 0 AND e.local_date >= s.valid_from
         AND (s.valid_to IS NULL OR e.local_date < s.valid_to)
        WINDOW w AS (PARTITION BY e.participant_id, e.property_id, s.valid_from, s.seq,
                     CASE s.per WHEN 'month' THEN {month:e.local_date}
                                WHEN 'year' THEN {year:e.local_date}
                                ELSE s.valid_from END)""",
    ),
    (
        # Dual scope 2 (GHG Protocol). Location-based: the hour's grid intensity where a
        # grid_intensity meter measured it, else the annual factor of the property's region (or
        # country). Market-based: covered energy at its instruments' rates, the rest at the
        # supplier's rate, else the residual mix, else (none published) the grid average.
        # No factor: NULL carbon and a NULL basis, never zero.
        "v_carbon_hourly",
        """SELECT x.*, x.kwh * x.location_kg_per_kwh AS kg_co2e,
               x.kwh * x.location_kg_per_kwh / 1000 AS t_co2e,
               CASE WHEN x.covered_kwh > 0 AND x.kwh = x.covered_kwh THEN x.covered_kg
                    ELSE x.covered_kg + (x.kwh - x.covered_kwh) * x.rest_kg_per_kwh
               END AS market_kg_co2e,
               CASE WHEN x.covered_kwh > 0 AND x.kwh = x.covered_kwh THEN x.covered_kg
                    ELSE x.covered_kg + (x.kwh - x.covered_kwh) * x.rest_kg_per_kwh
               END / 1000 AS market_t_co2e
        FROM (
        SELECT e.participant_id, e.property_id, e.hour_utc, e.local_date, e.kwh,
               COALESCE(l.scope2_kg_per_kwh, lc.scope2_kg_per_kwh) AS scope2_kg_per_kwh,
               COALESCE(l.edition, lc.edition) AS factor_edition,
               g.value / 1000 AS hourly_kg_per_kwh,
               COALESCE(g.value / 1000, l.scope2_kg_per_kwh, lc.scope2_kg_per_kwh)
                   AS location_kg_per_kwh,
               CASE WHEN g.value IS NOT NULL THEN 'hourly intensity'
                    WHEN COALESCE(l.scope2_kg_per_kwh, lc.scope2_kg_per_kwh) IS NOT NULL
                    THEN 'annual factor' END AS location_basis,
               s.contract_name,
               CASE WHEN c.covered_kwh IS NULL THEN 0 WHEN c.covered_kwh <= e.kwh
                    THEN c.covered_kwh ELSE e.kwh END AS covered_kwh,
               CASE WHEN c.covered_kwh IS NULL THEN 0 WHEN c.covered_kwh <= e.kwh
                    THEN c.covered_kg ELSE c.covered_kg * e.kwh / c.covered_kwh END
                   AS covered_kg,
               COALESCE(s.kg_per_kwh, r.scope2_kg_per_kwh, rc.scope2_kg_per_kwh,
                        l.scope2_kg_per_kwh, lc.scope2_kg_per_kwh) AS rest_kg_per_kwh,
               CASE WHEN s.kg_per_kwh IS NOT NULL THEN 'supplier rate'
                    WHEN COALESCE(r.scope2_kg_per_kwh, rc.scope2_kg_per_kwh) IS NOT NULL
                    THEN 'residual mix'
                    WHEN COALESCE(l.scope2_kg_per_kwh, lc.scope2_kg_per_kwh) IS NOT NULL
                    THEN 'grid average (no residual mix)' END AS market_basis,
               COALESCE(r.edition, rc.edition) AS residual_edition
        FROM {v:v_energy_hourly} e
        JOIN {v:v_property} p ON p.participant_id = e.participant_id
         AND p.property_id = e.property_id
        LEFT JOIN {t:fact_hourly} g ON g.participant_id = e.participant_id
         AND g.property_id = e.property_id AND g.hour_utc = e.hour_utc
         AND g.data_type = 'grid_intensity'
        LEFT JOIN {t:dim_supply} s ON s.participant_id = e.participant_id
         AND s.property_id = e.property_id AND s.seq = 0 AND e.local_date >= s.valid_from
         AND (s.valid_to IS NULL OR e.local_date < s.valid_to)
        LEFT JOIN (SELECT participant_id, property_id, hour_utc, sum(covered_kwh) AS covered_kwh,
                          sum(covered_kwh * kg_per_kwh) AS covered_kg
                   FROM {v:v_supply_covered_hourly}
                   GROUP BY participant_id, property_id, hour_utc) c
          ON c.participant_id = e.participant_id AND c.property_id = e.property_id
         AND c.hour_utc = e.hour_utc
        """
        + _FACTOR_JOIN.format(a="l", method="location")
        + "\n        "
        + _FACTOR_JOIN.format(a="r", method="residual")
        + ") x",
    ),
    (
        "v_carbon_monthly",
        """SELECT participant_id, property_id, {month:local_date} AS month, sum(kwh) AS kwh,
               sum(kg_co2e) AS kg_co2e, sum(t_co2e) AS t_co2e,
               sum(market_kg_co2e) AS market_kg_co2e, sum(market_t_co2e) AS market_t_co2e,
               sum(covered_kwh) AS covered_kwh,
               sum(CASE WHEN location_basis = 'hourly intensity' THEN 1 ELSE 0 END)
                   AS hours_hourly_intensity,
               sum(CASE WHEN location_basis IS NULL THEN kwh ELSE 0 END) AS kwh_without_factor
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
        out.append(TRUNCATE[dialect](kind, arg) if kind in ("month", "year") else name_of(arg))
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
