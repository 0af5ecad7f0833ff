"""The report reads right for any participant and any window: a year of real data for a
property outside Australia, with no office hours and no emission factor."""

from __future__ import annotations

import re
import warnings
from datetime import UTC, date, datetime

import pandas as pd

from meterflow.aggregation.emission_factors import read_factors
from meterflow.configuration.participant_xml import load_participant
from meterflow.reporting.report import build_report, resolution
from meterflow.warehouse import DuckDBWarehouse
from meterflow.warehouse.loads import (
    load_calendar,
    load_configuration,
    load_emission_factors,
    load_property_hours,
)

HOMES = b"""<participant id="homes" name="Homes in Leuven">
  <properties>
    <property id="leuven" name="Leuven homes" timezone="Europe/Brussels" country="BE"
              floorArea="140">
      <meter id="grid" dataType="energy">
        <csv path="exports/grid/" kind="interval" unit="kWh"/></meter>
      <meter id="heat-pump" dataType="energy" role="submeter">
        <csv path="exports/hp/" kind="interval" unit="kWh"/></meter>
      <meter id="pv" dataType="solar"><csv path="exports/pv/" kind="interval" unit="kWh"/></meter>
    </property>
  </properties>
</participant>"""


def kpis(page: str) -> dict[str, str]:
    return dict(re.findall(r"<div class='kpi'><span>(.*?)</span><b>(.*?)</b></div>", page))


def property_hours(property_id: str, data_type: str, hours, values, unit: str = "kWh"):
    """fact_hourly rows of one property and data type, measured and complete."""
    return pd.DataFrame(
        {
            "property_id": property_id,
            "data_type": data_type,
            "hour_utc": hours,
            "value": values,
            "unit": unit,
            "quality": "measured",
            "coverage": 1.0,
            "meters_reporting": 1,
            "meters_expected": 1,
        }
    )


def homes_report(shared_data, tmp_path, years: int, start: date, end: date):
    """Ausgrid customer 12's year (half-hourly kWh, general consumption and PV), as a home in
    Belgium, shifted by `years`: the report page and the carbon view's rows."""
    raw = pd.read_csv(shared_data / "ausgrid" / "customer12_2011-2012.csv", index_col=0)
    hourly = raw.set_axis(pd.to_datetime(raw.index) + pd.DateOffset(years=years))
    hourly = hourly.resample("h").sum()
    homes = load_participant(HOMES)
    hours = hourly.index.tz_localize("UTC")
    frames = [
        property_hours("leuven", data_type, hours, values.to_numpy())
        for data_type, values in (("energy", hourly.GC), ("solar", hourly.GG))
    ]
    with DuckDBWarehouse(tmp_path / "w.duckdb").prepare() as wh:
        load_configuration(wh, homes, datetime(2011, 1, 1, tzinfo=UTC))
        load_emission_factors(wh)
        load_calendar(wh, homes, hours)
        load_property_hours(wh, "homes", pd.concat(frames, ignore_index=True))
        page = build_report(wh, "homes", start, end)
        carbon = wh.query("SELECT * FROM v_carbon_hourly ORDER BY hour_utc")
    local = hours.tz_convert("Europe/Brussels")  # the report is in the property's local dates
    in_window = (local >= pd.Timestamp(start, tz=local.tz)) & (
        local < pd.Timestamp(end, tz=local.tz)
    )
    return page, carbon, hourly.GC[in_window]


def test_a_year_outside_australia_without_office_hours_reads_right(shared_data, tmp_path):
    """No factor for BE is 'no factor', not 0 t; no office hours is 'not configured', not
    100 % out of hours; a year is drawn per week, not as 366 overprinted days."""
    page, carbon, used = homes_report(shared_data, tmp_path, 0, date(2011, 7, 1), date(2012, 7, 1))
    shown = kpis(page)
    assert shown["Energy"] == f"{used.sum():,.0f} kWh"
    # 2011-12 precedes every shipped Belgian factor (the first is EEA 2014).
    assert shown["Carbon, location-based"] == "no factor for BE"  # not "0.0 t CO2-e"
    assert shown["Carbon, market-based"] == "no factor for BE"
    assert shown["Out of hours"] == "not configured"  # not "100%"
    assert "No emission factor for BE" in page and "Office hours not configured for leuven" in page
    assert carbon.t_co2e.isna().all() and carbon.market_t_co2e.isna().all()  # NULL, never 0
    assert resolution(date(2011, 7, 1), date(2012, 7, 1)) == "week"
    assert "<h2>Energy per property, per week</h2>" in page
    weeks = re.search(r"<h2>Energy per property.*?<tbody>(.*?)</tbody>", page, re.S).group(1)
    assert weeks.count("<tr>") == 53  # 2011-06-27 .. 2012-06-25, Monday to Monday
    assert page.count("<svg") == 3  # energy, intensity, completeness: no carbon, split, delta
    assert resolution(date(2026, 4, 1), date(2026, 4, 15)) == "day"
    assert resolution(date(2020, 1, 1), date(2026, 1, 1)) == "month"


def test_a_recent_year_in_belgium_reports_both_scopes_from_the_shipped_tables(
    shared_data, tmp_path
):
    """The same home's year moved to 2023-24: location-based carbon from the shipped Belgian
    grid factor, market-based from the Belgian residual mix (no contract), both in the report."""
    start, end = date(2023, 7, 1), date(2024, 7, 1)
    page, carbon, used = homes_report(shared_data, tmp_path, 12, start, end)
    factors = read_factors()
    current = factors[(factors.country == "BE") & factors.valid_to.isna()].set_index("method")
    location, residual = current.scope2_kg_per_kwh[["location", "residual"]]
    assert carbon.location_basis.eq("annual factor").all()
    assert carbon.market_basis.eq("residual mix").all()
    assert carbon.factor_edition.eq(current.edition["location"]).all()
    shown = kpis(page)
    assert shown["Carbon, location-based"] == f"{used.sum() * location / 1000:,.1f} t CO2-e"
    assert shown["Carbon, market-based"] == f"{used.sum() * residual / 1000:,.1f} t CO2-e"
    assert "No emission factor" not in page and page.count("<svg") == 4  # carbon drawn too


SOLAR_ONLY = b"""<participant id="sunny" name="Solar farm">
  <properties>
    <property id="farm" name="Farm" timezone="Australia/Brisbane" country="AU" region="QLD"
              floorArea="10">
      <meter id="pv" dataType="solar"><csv path="exports/pv/" kind="interval" unit="kWh"/></meter>
    </property>
  </properties>
</participant>"""


def test_a_participant_with_solar_meters_only_gets_a_report_without_nan_or_warnings(tmp_path):
    sunny = load_participant(SOLAR_ONLY)
    hours = pd.date_range("2026-04-01T00:00Z", periods=14 * 24, freq="h")
    solar = property_hours("farm", "solar", hours, 2.0)
    with DuckDBWarehouse(tmp_path / "w.duckdb").prepare() as wh:
        load_configuration(wh, sunny, datetime(2026, 1, 1, tzinfo=UTC))
        load_emission_factors(wh)
        load_calendar(wh, sunny, hours)
        load_property_hours(wh, "sunny", solar)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "invalid value encountered in scalar divide"
            page = build_report(wh, "sunny", date(2026, 4, 2), date(2026, 4, 14))
    text = re.sub(r"<svg.*?</svg>|<[^>]+>", " ", page, flags=re.DOTALL)
    assert not re.search(r"\bnan\b", text, re.IGNORECASE), text
    shown = kpis(page)
    assert shown["Energy"] == "no energy data"
    assert shown["Intensity"] == "no energy data"
    assert shown["Completeness"] == "no energy data"
