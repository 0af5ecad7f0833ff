"""Dual scope 2 carbon, by hand: location-based from the hour's grid intensity or the annual
factor, market-based from the supply contract and the residual mix; no factor is NULL, never 0.
Each figure is checked on DuckDB and on a real PostgreSQL server."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime

import pandas as pd
import pytest
from psycopg.conninfo import make_conninfo

from meterflow.aggregation.emission_factors import read_factors
from meterflow.common import demo_data
from meterflow.common.errors import ConfigError, MeterflowError
from meterflow.configuration.participant_xml import load_participant
from meterflow.jobs.periods import Period
from meterflow.mrv.extract import extract
from meterflow.warehouse import DuckDBWarehouse
from meterflow.warehouse.loads import (
    load_calendar,
    load_configuration,
    load_emission_factors,
    load_meter_hours,
    load_property_hours,
)
from meterflow.warehouse.postgres import PostgresWarehouse
from tests.test_report import property_hours

HEADER = (
    "country,region,method,valid_from,valid_to,edition,scope2_kg_per_kwh,scope3_kg_per_kwh,"
    "publication,licence,source\n"
)
# Test factors (inputs of the hand computations below, not shipped figures).
FACTORS = (
    HEADER
    + "AU,NSW,location,2024-07-01,,T 1,0.66,,test table,CC0,test\n"
    + "AU,,residual,2024-07-01,,T 1,0.81,,test table,CC0,test\n"
)
LOCATION, RESIDUAL = 0.66, 0.81
HOURS = pd.date_range("2025-01-01T00:00Z", "2026-01-01T00:00Z", freq="h", inclusive="left")
SYDNEY = "Australia/Sydney"


def acme_with(supply: str, country: bytes = b'country="AU" region="NSW"'):
    """The demo participant, its Sydney HQ with these <supply> elements instead of its own (and
    this location)."""
    office = b'<officeHours days="Mon Tue Wed Thu Fri" start="08:00" end="18:00"/>'
    xml = (demo_data.EXAMPLES / "acme.xml").read_bytes()
    xml = re.sub(rb"<supply [^>]*/>|<supply .*?</supply>", b"", xml, flags=re.DOTALL)
    head, _, tail = xml.partition(b'id="syd-hq"')
    tail = tail.replace(b'country="AU" region="NSW"', country, 1)
    tail = tail.replace(office, office + b"\n      " + supply.encode(), 1)
    return load_participant(head + b'id="syd-hq"' + tail)


def hourly(data_type: str, values, hours=HOURS, unit: str = "kWh") -> pd.DataFrame:
    return property_hours("syd-hq", data_type, hours, values, unit)


@pytest.fixture
def factors(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "emission_factors.csv").write_text(FACTORS)
    monkeypatch.setattr("meterflow.aggregation.emission_factors.CONFIGS", configs)
    return configs


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request, tmp_path, factors):
    """A prepared empty warehouse of each backend (PostgreSQL: a schema of its own)."""
    if request.param == "duckdb":
        wh = DuckDBWarehouse(tmp_path / "w.duckdb")
    else:
        schema = f"mf_carbon_{uuid.uuid4().hex[:8]}"
        wh = PostgresWarehouse(make_conninfo(**request.getfixturevalue("postgres")), schema)
    with wh:
        wh.prepare()
        yield wh
        if request.param == "postgres":
            wh.execute(f'DROP SCHEMA "{schema}" CASCADE')


def load(wh, participant, energy: pd.DataFrame, *more: pd.DataFrame) -> None:
    load_configuration(wh, participant, datetime(2025, 1, 1, tzinfo=UTC))
    load_emission_factors(wh)
    load_calendar(wh, participant, HOURS)
    load_property_hours(wh, participant.id, pd.concat([energy, *more], ignore_index=True))


def carbon(wh) -> pd.DataFrame:
    return wh.query(
        f"SELECT * FROM {wh.table('v_carbon_hourly')} WHERE property_id = 'syd-hq' "
        "ORDER BY hour_utc"
    )


def local_dates(hours=HOURS) -> pd.Series:
    return pd.Series(hours.tz_convert(SYDNEY).date, index=hours)


def consumption(hours=HOURS) -> pd.Series:
    """A year of hourly kWh with a daily shape and a weekly rhythm."""
    return pd.Series(5.0 + hours.hour % 9 + 2.0 * (hours.dayofweek < 5), index=hours)


def test_green_power_half_the_year_leaves_the_residual_mix_on_the_grid_half(warehouse):
    participant = acme_with(
        '<supply from="2025-01-01" to="2025-07-01" name="Green tariff">'
        '<greenPower share="1" scheme="GreenPower"/></supply>'
    )
    kwh = consumption()
    load(warehouse, participant, hourly("energy", kwh.values))
    rows = carbon(warehouse)
    total = warehouse.query(
        f"SELECT sum(kg_co2e) AS location, sum(market_kg_co2e) AS market "
        f"FROM {warehouse.table('v_carbon_monthly')} WHERE property_id = 'syd-hq'"
    )
    grid_half = kwh[local_dates() >= date(2025, 7, 1)].sum()
    assert total.market[0] == pytest.approx(RESIDUAL * grid_half, rel=1e-9)
    assert total.location[0] == pytest.approx(LOCATION * kwh.sum(), rel=1e-9)
    green = rows[pd.to_datetime(rows.local_date).dt.date < date(2025, 7, 1)]
    assert (green.market_kg_co2e == 0).all() and (green.covered_kwh == green.kwh).all()
    assert set(rows.market_basis) == {"residual mix"}
    assert set(rows.location_basis) == {"annual factor"}


def test_dual_reporting_with_hourly_intensity_certificates_and_a_supplier_rate(warehouse):
    """Location: the hour's measured intensity in January, the annual factor elsewhere.
    Market: 3 MWh of certificates a month spread over each month's use, the rest at the
    supplier's disclosed rate from July (residual mix before it)."""
    participant = acme_with(
        '<supply from="2025-07-01" name="Retail + LGCs" supplierKgPerKwh="0.55">'
        '<certificates mwh="3" per="month" scheme="LGC"/></supply>'
    )
    kwh = consumption()
    january = HOURS[(HOURS < "2025-02-01") & (HOURS.hour % 5 != 0)]  # some hours missing
    intensity = pd.Series(400.0 + 50 * (january.hour % 4), index=january)  # g/kWh
    load(
        warehouse,
        participant,
        hourly("energy", kwh.values),
        hourly("grid_intensity", intensity.values, january, "gCO2e/kWh"),
    )
    rows = carbon(warehouse)
    measured = HOURS.isin(january)

    factor = pd.Series(LOCATION, index=HOURS)
    factor[january] = intensity / 1000
    location = kwh * factor
    days = local_dates()
    month = pd.Series([d.replace(day=1) for d in days], index=HOURS)
    contract = days >= date(2025, 7, 1)
    month_kwh = kwh[contract].groupby(month[contract]).transform("sum")
    covered = (kwh[contract] * (3000 / month_kwh).clip(upper=1)).reindex(HOURS, fill_value=0)
    rest = pd.Series(RESIDUAL, index=HOURS).where(~contract, 0.55)
    market = (kwh - covered) * rest

    assert rows.kg_co2e.values == pytest.approx(location.values, rel=1e-9)
    assert rows.market_kg_co2e.values == pytest.approx(market.values, rel=1e-9)
    assert rows.location_basis[measured].eq("hourly intensity").all()
    assert rows.location_basis.value_counts()["annual factor"] == len(HOURS) - len(january)
    assert rows.market_basis[contract.values].eq("supplier rate").all()
    assert rows.market_basis[~contract.values].eq("residual mix").all()
    monthly = warehouse.query(
        f"SELECT month, covered_kwh, hours_hourly_intensity FROM "
        f"{warehouse.table('v_carbon_monthly')} WHERE property_id = 'syd-hq' ORDER BY month"
    )
    assert monthly.covered_kwh.tolist()[6:12] == pytest.approx([3000.0] * 6)  # Jul..Dec
    assert monthly.hours_hourly_intensity.tolist()[:2] == [
        (month[january] == date(2025, 1, 1)).sum(),
        (month[january] == date(2025, 2, 1)).sum(),
    ]


def test_a_property_without_a_factor_has_null_carbon_in_every_view(warehouse):
    participant = acme_with("", country=b'country="BE"')  # no BE rows in this factor table
    load(warehouse, participant, hourly("energy", consumption().values))
    rows = carbon(warehouse)
    assert rows.kg_co2e.isna().all() and rows.market_kg_co2e.isna().all()
    assert rows.location_basis.isna().all() and rows.market_basis.isna().all()
    monthly = warehouse.query(
        f"SELECT * FROM {warehouse.table('v_carbon_monthly')} WHERE property_id = 'syd-hq'"
    )
    assert len(monthly) == 13  # local months: Jan 2025 .. the first hours of Jan 2026
    assert monthly.t_co2e.isna().all() and monthly.market_t_co2e.isna().all()
    assert monthly.kwh_without_factor.tolist() == pytest.approx(monthly.kwh.tolist())


def test_shipped_factor_tables_name_their_source_and_never_overlap():
    shipped = read_factors()
    for column in ("publication", "licence", "source", "edition"):
        assert shipped[column].str.strip().ne("").all(), column
    assert {"AU", "GB", "US", "NZ", "DE", "FR", "BE"} <= set(shipped.country)
    assert {"location", "residual"} == set(shipped.method)
    # Every number not read in the publication itself says it was transcribed.
    secondary = ~shipped.edition.str.startswith("DESNZ")
    assert shipped.source[secondary].str.contains("secondary").all()


def test_a_factor_file_without_licence_or_with_overlapping_periods_is_refused(factors):
    path = factors / "emission_factors.d" / "extra.csv"
    path.parent.mkdir()
    path.write_text(HEADER + "NZ,,location,2024-01-01,,X 1,0.1,,pub, ,here\n")
    with pytest.raises(MeterflowError, match=r"extra.csv, line 2: no licence"):
        read_factors()
    path.write_text(
        HEADER
        + "NZ,,location,2024-01-01,,X 1,0.1,,pub,CC0,here\n"
        + "NZ,,location,2024-06-01,,X 2,0.2,,pub,CC0,here\n"
    )
    with pytest.raises(MeterflowError, match=r"NZ/.*location from 2024-01-01 .X 1. run into"):
        read_factors()


@pytest.mark.parametrize(
    ("supply", "message"),
    [
        (
            '<supply from="2025-01-01" to="2025-07-01"/><supply from="2025-06-01"/>',
            "supply from 2025-06-01 overlaps the contract from 2025-01-01",
        ),
        (
            '<supply from="2025-01-01"><ppa share="0.5" mwh="10"/></supply>',
            "<ppa> needs exactly one of share or mwh",
        ),
        (
            '<supply from="2025-01-01"><ppa share="0.7"/><greenPower share="0.6"/></supply>',
            "shares add up to 1.3",
        ),
    ],
)
def test_contradictory_supply_contracts_are_refused_by_line(supply, message):
    with pytest.raises(ConfigError, match=message) as error:
        acme_with(supply)
    assert str(error.value).startswith("<participant.xml>:8:")  # the <supply> line


def test_the_mrv_record_carries_market_based_carbon_next_to_location_based(tmp_path, factors):
    """A day under a 40 % PPA: the record's market carbon is the meter's kWh x the property's
    market rate that day (60 % at the residual mix), its location carbon kWh x the factor."""
    participant = acme_with('<supply from="2025-01-01"><ppa share="0.4"/></supply>')
    kwh = consumption()
    day = Period(datetime(2025, 3, 9, 13, tzinfo=UTC), datetime(2025, 3, 10, 13, tzinfo=UTC))
    with DuckDBWarehouse(tmp_path / "w.duckdb") as wh:
        wh.prepare()
        load(wh, participant, hourly("energy", kwh.values))
        meter_kwh = (kwh / 2).rename("value").rename_axis("hour_utc").reset_index()
        load_meter_hours(
            wh,
            participant,
            {"syd-hq-main": meter_kwh.assign(unit="kWh", quality="measured", coverage=1.0)},
        )
        x = extract(wh, participant, participant.meter("syd-hq-main"), day)
    energy = kwh[(kwh.index >= day.start) & (kwh.index < day.end)].sum() / 2
    assert x.energy_kwh == pytest.approx(energy)
    assert x.carbon_t == pytest.approx(energy * LOCATION / 1000)
    assert x.market_carbon_t == pytest.approx(energy * 0.6 * RESIDUAL / 1000)
    assert x.market_basis == "residual mix"
