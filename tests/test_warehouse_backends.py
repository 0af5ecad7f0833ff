"""The same dispatch into DuckDB and into PostgreSQL (a real server) gives identical answers,
and the context the views rely on is right: calendar across DST and holidays, carbon by the
factor valid at each hour, configuration history."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime

import pandas as pd
import psycopg
import pytest

from blocks import PostgresWarehouseBlock
from flows.demo import demo_sources
from flows.dispatch import dispatch
from meterflow.aggregation.emission_factors import read_factors
from meterflow.common import demo_data
from meterflow.common.errors import MeterflowError
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.participant_xml import load_participant
from meterflow.warehouse import DuckDBWarehouse
from meterflow.warehouse.loads import (
    load_calendar,
    load_configuration,
    load_emission_factors,
    load_property_hours,
)
from meterflow.warehouse.schema import TABLES
from meterflow.warehouse.views import VIEWS
from tests.portal_answers import assert_same_answers, portal_queries

# Easter weekend 2026 in Sydney is also the end of daylight saving (Sunday 5 April, 03:00).
WINDOW = HourWindow(datetime(2026, 4, 2, tzinfo=UTC), datetime(2026, 4, 8, tzinfo=UTC))


@pytest.fixture(scope="module")
def pg_schema(postgres):
    schema = f"mf_test_{uuid.uuid4().hex[:8]}"
    yield schema
    with psycopg.connect(**postgres, autocommit=True) as con:
        con.execute("SET lock_timeout = '10s'")
        con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="module")
def loaded(prefect_server, tmp_path_factory, postgres, pg_schema):
    """One dispatch into a DuckDB file and one into PostgreSQL, from identical sources."""
    PostgresWarehouseBlock(
        host=postgres["host"],
        port=int(postgres["port"]),
        database=postgres["dbname"],
        user=postgres["user"],
        password=postgres.get("password"),
        schema_name=pg_schema,
    ).save("pg-test", overwrite=True)
    targets = {}
    for name, warehouse in (("duckdb", None), ("postgres", "meterflow-postgresql/pg-test")):
        data_root = tmp_path_factory.mktemp(name) / "data"
        demo_data.generate(data_root, WINDOW)
        warehouse = warehouse or str(data_root / "warehouse.duckdb")
        with demo_sources(WINDOW):
            state = dispatch(
                start=WINDOW.start.isoformat(),
                end=WINDOW.end.isoformat(),
                data_root=str(data_root),
                warehouse=warehouse,
                return_state=True,
            )
        assert state.is_completed(), state.message
        targets[name] = warehouse
    return targets


def _is_date(value) -> bool:
    return isinstance(value, date)


def snapshot(query, relation: str, columns: list[str]) -> pd.DataFrame:
    frame = query(f"SELECT * FROM {relation}")
    frame = frame[[c for c in columns if c in frame.columns]]
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            frame[column] = values.astype("float64").round(9)
        elif pd.api.types.is_datetime64_any_dtype(values) or values.map(_is_date).any():
            frame[column] = pd.to_datetime(values).astype("datetime64[us]")
        else:
            frame[column] = values.map(lambda v: None if pd.isna(v) else str(v))
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def test_duckdb_and_postgres_give_identical_results(loaded, postgres, pg_schema):
    with (
        DuckDBWarehouse(loaded["duckdb"], read_only=True) as duck,
        psycopg.connect(**postgres, autocommit=True) as pg,
    ):

        def pg_query(sql: str) -> pd.DataFrame:
            with pg.cursor() as cursor:
                cursor.execute(sql.replace("FROM ", f'FROM "{pg_schema}".', 1))
                names = [c.name for c in cursor.description]
                return pd.DataFrame(cursor.fetchall(), columns=names)

        compared = 0
        # API tokens are issued per warehouse (random ids and secrets): none in either here; the
        # demo's meters are healthy at its end, so no alert incident either.
        empty = ("api_token", "alert_incident")
        relations = [r for r in [*TABLES, *(name for name, _ in VIEWS)] if r not in empty]
        for relation in relations:
            columns = list(duck.query(f"SELECT * FROM {relation} LIMIT 0").columns)
            run_times = ("valid_from", "valid_to", "updated_utc", "at_utc", "confirmation")
            run_times += ("confirmed_utc", "guardian_url")  # the emulator's port differs per run
            run_times += ("run_id", "loaded_utc")  # collection runs are named per run
            run_times += ("started_utc", "ended_utc")  # when a task ran
            # (its job, interval, stage, status, retries, errors, hours and coverage are compared)
            columns = [c for c in columns if c not in run_times]
            left = without_times(snapshot(duck.query, relation, columns))
            right = without_times(snapshot(pg_query, relation, columns))
            pd.testing.assert_frame_equal(left, right, check_dtype=False, obj=relation)
            compared += len(left) > 0
    assert compared == len(relations)  # every table and view has rows


def without_times(frame: pd.DataFrame) -> pd.DataFrame:
    """A task's errors without when each happened (each run met them at its own time)."""
    if "errors" in frame.columns:
        frame["errors"] = frame["errors"].map(
            lambda e: (
                json.dumps([{**x, "at": None} for x in json.loads(e)])
                if isinstance(e, str)
                else None
            )
        )
    return frame


def test_calendar_flags_across_dst_and_easter_in_sydney(loaded):
    with DuckDBWarehouse(loaded["duckdb"], read_only=True) as wh:
        days = wh.query(
            """SELECT local_date, count(*) AS hours, bool_or(is_holiday) AS holiday,
                      sum(CASE WHEN is_office_hours THEN 1 ELSE 0 END) AS office_hours
               FROM dim_calendar WHERE property_id = 'syd-hq'
               GROUP BY local_date ORDER BY local_date"""
        ).set_index("local_date")
        first_office = wh.query(
            """SELECT hour_utc FROM dim_calendar WHERE property_id = 'syd-hq'
               AND local_date = DATE '2026-04-07' AND is_office_hours ORDER BY hour_utc LIMIT 1"""
        ).hour_utc[0]
    day = pd.Timestamp
    assert days.hours[day("2026-04-05")] == 25  # clocks go back: 25 local hours
    assert days.holiday[day("2026-04-03")] and days.holiday[day("2026-04-06")]  # Good Fri, Mon
    assert not days.holiday[day("2026-04-07")]
    assert days.office_hours[day("2026-04-03")] == 0  # a holiday: the office is closed
    assert days.office_hours[day("2026-04-07")] == 10  # Tuesday 08:00-18:00
    # After the change Sydney is UTC+10: 08:00 local is 22:00 UTC the day before.
    assert first_office == pd.Timestamp("2026-04-06 22:00")
    # Before it (AEDT, UTC+11) Thursday 08:00 local was 21:00 UTC.
    with DuckDBWarehouse(loaded["duckdb"], read_only=True) as wh:
        thursday = wh.query(
            """SELECT min(hour_utc) AS first FROM dim_calendar WHERE property_id = 'syd-hq'
               AND local_date = DATE '2026-04-02' AND is_office_hours"""
        ).first[0]
    assert thursday == pd.Timestamp("2026-04-01 21:00")


def test_carbon_uses_the_grid_intensity_of_the_hour_where_the_source_had_it(
    loaded, postgres, pg_schema
):
    """The demo's Sydney HQ has an Electricity Maps meter (AUS-NSW) whose source lacks six hours
    (flows/demo.py): location-based carbon is kWh x that hour's intensity, and kWh x the NSW
    annual factor in the six hours, on DuckDB and on PostgreSQL alike."""
    from psycopg.conninfo import make_conninfo

    from emulators.electricitymaps import ElectricityMapsEmulator
    from meterflow.warehouse.postgres import PostgresWarehouse

    gap = pd.date_range(WINDOW.start + pd.Timedelta(days=3), periods=6, freq="h").tz_localize(None)
    emulator = ElectricityMapsEmulator(api_keys=set(), seed=demo_data.SEED, now=WINDOW.end)
    nsw = read_factors().set_index(["country", "region", "method"]).loc[("AU", "NSW", "location")]
    for wh in (
        DuckDBWarehouse(loaded["duckdb"], read_only=True),
        PostgresWarehouse(make_conninfo(**postgres), pg_schema),
    ):
        with wh:
            rows = wh.query(
                f"SELECT hour_utc, kwh, kg_co2e, location_basis FROM "
                f"{wh.table('v_carbon_hourly')} WHERE property_id = 'syd-hq' ORDER BY hour_utc"
            )
        hours = pd.to_datetime(rows.hour_utc)
        annual = hours.isin(gap)
        assert annual.sum() == 6
        assert rows.location_basis[annual].eq("annual factor").all()
        assert rows.location_basis[~annual].eq("hourly intensity").all()
        final = [h for h in hours[~annual] if not emulator.is_estimated(h.tz_localize("UTC"))]
        served = pd.Series(
            [emulator.intensity("AUS-NSW", h.tz_localize("UTC")) / 1000 for h in final],
            index=final,
        )
        expected = rows.set_index(hours).kwh * nsw.scope2_kg_per_kwh
        expected[served.index] = rows.set_index(hours).kwh[served.index] * served
        measured = hours.isin(served.index) | annual
        assert rows.kg_co2e[measured.values].tolist() == pytest.approx(
            expected[hours[measured]].tolist(), rel=1e-9
        )


def test_carbon_is_energy_times_the_factor_valid_at_that_hour(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "emission_factors.csv").write_text(
        "country,region,method,valid_from,valid_to,edition,scope2_kg_per_kwh,scope3_kg_per_kwh,"
        "publication,licence,source\n"
        "AU,NSW,location,2025-07-01,2026-04-04,NGA 2025,0.64,0.04,NGA,CC BY 4.0,test\n"
        "AU,NSW,location,2026-04-05,,NGA 2026,0.60,0.04,NGA,CC BY 4.0,test\n"
    )
    monkeypatch.setattr("meterflow.aggregation.emission_factors.CONFIGS", configs)
    participant = load_participant(demo_data.EXAMPLES / "acme.xml")
    hours = pd.date_range("2026-04-04T10:00Z", periods=6, freq="h")  # 21:00..02:00 Sydney
    with DuckDBWarehouse(tmp_path / "w.duckdb").prepare() as wh:
        load_configuration(wh, participant, datetime.now(UTC))
        load_emission_factors(wh)
        load_calendar(wh, participant, hours)
        energy = pd.DataFrame(
            {
                "property_id": "syd-hq",
                "data_type": "energy",
                "hour_utc": hours,
                "value": [10.0, 20, 30, 40, 50, 60],
                "unit": "kWh",
                "quality": "measured",
                "coverage": 1.0,
                "meters_reporting": 1,
                "meters_expected": 1,
            }
        )
        load_property_hours(wh, "acme", energy)
        carbon = wh.query("SELECT * FROM v_carbon_hourly ORDER BY hour_utc")
        # Editing a published factor in place is refused, not applied silently.
        factors = configs / "emission_factors.csv"
        factors.write_text(factors.read_text().replace("NGA 2026,0.60", "NGA 2026,0.61"))
        with pytest.raises(MeterflowError, match="publish the revision as a new edition"):
            load_emission_factors(wh)
    # Sydney dates: 04-04 until 13:00 UTC (midnight local, AEDT), then 04-05.
    expected = [0.64, 0.64, 0.64, 0.60, 0.60, 0.60]
    assert carbon.scope2_kg_per_kwh.tolist() == expected
    assert carbon.kg_co2e.tolist() == pytest.approx(
        [k * f for k, f in zip([10, 20, 30, 40, 50, 60], expected, strict=True)]
    )
    assert carbon.t_co2e.tolist() == pytest.approx([v / 1000 for v in carbon.kg_co2e])


def test_configuration_changes_are_tracked_with_valid_from_and_to(tmp_path):
    participant = load_participant(demo_data.EXAMPLES / "acme.xml")
    bigger = participant.model_copy(
        update={
            "properties": (
                participant.properties[0].model_copy(update={"floor_area_m2": 6000.0}),
                *participant.properties[1:],
            )
        }
    )
    first, second = datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC)
    with DuckDBWarehouse(tmp_path / "w.duckdb").prepare() as wh:
        load_configuration(wh, participant, first)
        again = load_configuration(wh, participant, first)
        load_configuration(wh, bigger, second)
        rows = wh.query(
            "SELECT floor_area_m2, valid_from, valid_to FROM dim_property "
            "WHERE property_id = 'syd-hq' ORDER BY valid_from"
        )
        current = wh.query("SELECT floor_area_m2 FROM v_property WHERE property_id = 'syd-hq'")
    assert (again.inserted, again.updated) == (0, 0)
    assert rows.floor_area_m2.tolist() == [5200.0, 6000.0]
    assert rows.valid_to[0] == pd.Timestamp("2026-05-01") and pd.isna(rows.valid_to[1])
    assert current.floor_area_m2.tolist() == [6000.0]


def test_each_warehouse_block_slug_opens_the_block_type_it_names():
    """`<slug>/<name>` finds its block type without importing the others' SDKs: the map must
    name, for every slug, the block type whose slug it is."""
    import importlib

    from blocks.warehouse import BLOCKS

    assert set(BLOCKS) == {"meterflow-duckdb", "meterflow-postgresql", "meterflow-bigquery"}
    for slug, (module, name) in BLOCKS.items():
        assert getattr(importlib.import_module(module), name).get_block_type_slug() == slug


def test_a_dispatch_process_imports_reports_bigquery_and_mrv_only_when_used():
    """Each of the flow process's imports is memory it holds for the whole run (about 65 MiB
    for matplotlib, prefect-gcp and the MRV modules): they load when a report is due, a
    BigQuery block is named, or a participant has MRV jobs."""
    import subprocess
    import sys

    heavy = ("matplotlib", "prefect_gcp", "flows.mrv", "google.cloud.bigquery")
    probe = f"import sys, flows.dispatch; print(sorted(set({heavy!r}) & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_portal_answers_the_same_on_duckdb_and_postgres(loaded):
    """Every portal query, for each participant, gives the rows the API sends alike from both
    backends."""
    from blocks import open_warehouse

    with (
        DuckDBWarehouse(loaded["duckdb"], read_only=True) as duck,
        open_warehouse(loaded["postgres"]) as pg,
    ):
        answered = assert_same_answers(duck, pg, ["acme", "globex"], WINDOW)
    assert answered == set(portal_queries(WINDOW))  # each has rows for a participant at least


def test_a_week_closed_is_closed_energy_not_office_or_out_of_hours(tmp_path, postgres):
    """Sydney HQ shut for the week after Easter: that week's energy is `closed` in the calendar,
    the views and the report's split, the same on DuckDB and on PostgreSQL."""
    from psycopg.conninfo import make_conninfo

    from meterflow.warehouse.postgres import PostgresWarehouse

    xml = (
        (demo_data.EXAMPLES / "acme.xml")
        .read_bytes()
        .replace(
            b'<officeHours days="Mon Tue Wed Thu Fri" start="08:00" end="18:00"/>',
            b'<officeHours days="Mon Tue Wed Thu Fri" start="08:00" end="18:00"/>\n'
            b'      <closure from="2026-04-07" to="2026-04-14" reason="refurbishment"/>',
        )
    )
    acme = load_participant(xml)
    hours = pd.date_range("2026-04-01T00:00Z", "2026-04-20T00:00Z", freq="h", inclusive="left")
    energy = pd.DataFrame(
        {
            "property_id": "syd-hq",
            "data_type": "energy",
            "hour_utc": hours,
            "value": 10.0,
            "unit": "kWh",
            "quality": "measured",
            "coverage": 1.0,
            "meters_reporting": 1,
            "meters_expected": 1,
        }
    )
    schema = f"mf_closed_{uuid.uuid4().hex[:8]}"
    answers = {}
    for name, wh in (
        ("duckdb", DuckDBWarehouse(tmp_path / "w.duckdb")),
        ("postgres", PostgresWarehouse(make_conninfo(**postgres), schema)),
    ):
        with wh:
            wh.prepare()
            load_configuration(wh, acme, datetime(2026, 1, 1, tzinfo=UTC))
            load_calendar(wh, acme, hours)
            load_property_hours(wh, "acme", energy)
            answers[name] = (
                wh.query(
                    f"SELECT local_date, max(closure_reason) AS reason, sum(kwh) AS kwh, "
                    f"sum(CASE WHEN is_office_hours THEN 1 ELSE 0 END) AS office_hours, "
                    f"min(use_period) AS first, max(use_period) AS last "
                    f"FROM {wh.table('v_energy_hourly')} WHERE property_id = 'syd-hq' "
                    "GROUP BY local_date ORDER BY local_date"
                ),
                wh.query(
                    f"SELECT office_kwh, out_of_hours_kwh, holiday_kwh, closed_kwh, kwh "
                    f"FROM {wh.table('v_office_hours_monthly')} WHERE property_id = 'syd-hq'"
                ),
            )
            if name == "postgres":
                wh.execute(f'DROP SCHEMA "{schema}" CASCADE')
    for days, month in answers.values():
        closed = days[days.reason.notna()]
        assert [pd.Timestamp(d).date() for d in closed.local_date] == [
            date(2026, 4, d) for d in range(7, 14)
        ]
        assert set(closed.reason) == {"refurbishment"} and (closed.office_hours == 0).all()
        assert set(closed["first"]) == {"closed"} and set(closed["last"]) == {"closed"}
        (row,) = month.to_dict("records")
        assert row["closed_kwh"] == 7 * 24 * 10.0  # the week, whatever the weekday
        assert row["office_kwh"] + row["out_of_hours_kwh"] + row["holiday_kwh"] + row[
            "closed_kwh"
        ] == pytest.approx(row["kwh"])
    pd.testing.assert_frame_equal(answers["duckdb"][1], answers["postgres"][1], check_dtype=False)
