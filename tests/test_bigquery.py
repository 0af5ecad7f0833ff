"""The BigQuery backend with the real google-cloud-bigquery client against a BigQuery API server
on loopback (bqemulator from .venv-bq, emulators/bigquery.py): schema, MERGE counts, loads from
Cloud Storage, parameters, and the views, summary and report giving what DuckDB gives for the
same rows. docs/warehouse.md says what the server does differently from BigQuery."""

from __future__ import annotations

import io
import re
import uuid
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest
from gcp_storage_emulator.server import create_server
from gcp_storage_emulator.storage import STORAGE_DIR
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from connectors import health_thresholds
from emulators.bigquery import BigQueryEmulator
from meterflow.collection.shards import MeterOutcome
from meterflow.common import demo_data
from meterflow.common.cloud_storage import GcsStorage
from meterflow.common.storage import LocalStorage
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.participant_xml import load_participant
from meterflow.hours.hourly_store import DAY_SCHEMA, day_key, empty_day, upsert_day
from meterflow.jobs.track import track
from meterflow.reporting import report
from meterflow.standardisation.units import STANDARD_UNIT
from meterflow.warehouse import DuckDBWarehouse
from meterflow.warehouse.backend import StoredRows
from meterflow.warehouse.bigquery import BigQueryWarehouse
from meterflow.warehouse.loads import (
    load_calendar,
    load_configuration,
    load_emission_factors,
    load_hours,
    load_meter_hours,
    load_property_hours,
)
from meterflow.warehouse.queries import property_summary
from meterflow.warehouse.schema import TABLES
from meterflow.warehouse.views import VIEWS
from tests.conftest import free_port
from tests.portal_answers import assert_same_answers
from tests.test_warehouse_backends import snapshot

pytestmark = pytest.mark.bigquery

# Good Friday to Tuesday after Easter 2026; daylight saving ends in Sydney on the Sunday.
WINDOW = HourWindow(datetime(2026, 4, 2, 13, tzinfo=UTC), datetime(2026, 4, 7, 14, tzinfo=UTC))
CONFIGURED, RECONFIGURED = datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 4, 5, tzinfo=UTC)
SHAPES = {  # data type: (mean, daily swing)
    "energy": (40.0, 25.0),
    "solar": (8.0, 8.0),
    "temperature": (22.0, 1.5),
    "outdoor_temperature": (14.0, 5.0),
    "occupancy": (60.0, 50.0),
    "irradiance": (300.0, 300.0),
}


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """gcp-storage-emulator keeping objects on disk, in the tree the BigQuery server reads
    `gs://bucket/object` from; yields its URL and that tree."""
    data = tmp_path_factory.mktemp("gcs")
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=False, data_dir=str(data))
    server.start()
    yield f"http://127.0.0.1:{port}", data / STORAGE_DIR
    server.stop()


@pytest.fixture(scope="module")
def bigquery(tmp_path_factory, gcs) -> BigQueryEmulator:
    with BigQueryEmulator(tmp_path_factory.mktemp("bigquery"), gcs_root=gcs[1]) as server:
        yield server


def new_warehouse(server: BigQueryEmulator, *tables: str) -> BigQueryWarehouse:
    """A new dataset; with `tables`, only those are created (else everything, by prepare())."""
    client = server.client()
    dataset = client.create_dataset(f"mf_{uuid.uuid4().hex[:8]}").dataset_id
    wh = BigQueryWarehouse(client, dataset)
    for name in tables:
        wh.execute(TABLES[name].ddl("bigquery", wh.table(name)))
    return wh if tables else wh.prepare()


def meter_rows(hours: pd.DatetimeIndex | None = None, values=(1.0, None, 3.0)) -> pd.DataFrame:
    """A meter's hours from 2026-04-01 00:00 UTC (or the given ones) as fact_meter_hourly rows."""
    if hours is None:
        hours = pd.date_range("2026-04-01T00:00Z", periods=3, freq="h")
    return pd.DataFrame(
        {
            "participant_id": "acme",
            "meter_id": "syd-hq-main",
            "data_type": "energy",
            "hour_utc": hours,
            "value": list(values),
            "unit": "kWh",
            "quality": "measured",
            "coverage": 1.0,
        }
    )


def test_prepare_creates_every_table_and_view_and_can_run_again(bigquery):
    wh = new_warehouse(bigquery)
    wh.prepare()
    found = {t.table_id: t.table_type for t in wh.client.list_tables(wh.dataset)}
    tables = dict.fromkeys([*TABLES, "meterflow_schema"], "TABLE")  # and the schema's version
    assert found == {**tables, **{name: "VIEW" for name, _ in VIEWS}}
    fields = wh.client.get_table(wh.table_id("fact_meter_hourly")).schema
    assert [(f.name, f.field_type, f.mode) for f in fields][2:5] == [
        ("data_type", "STRING", "REQUIRED"),
        ("hour_utc", "TIMESTAMP", "REQUIRED"),
        ("value", "FLOAT", "NULLABLE"),
    ]


def test_upsert_inserts_then_writes_nothing_then_updates_what_changed(bigquery):
    wh = new_warehouse(bigquery, "fact_meter_hourly")
    first = wh.upsert("fact_meter_hourly", meter_rows())
    again = wh.upsert("fact_meter_hourly", meter_rows())
    hours = pd.date_range("2026-04-01T00:00Z", periods=4, freq="h")
    changed = meter_rows(hours, [1.0, 2.0, 3.0, 1.0])  # the missing hour arrives, and a new one
    third = wh.upsert("fact_meter_hourly", changed)
    stored = wh.query(f"SELECT hour_utc, value FROM {wh.table('fact_meter_hourly')} ORDER BY 1")
    assert [(c.inserted, c.updated) for c in (first, again, third)] == [(3, 0), (0, 0), (1, 1)]
    assert stored.hour_utc.tolist() == list(pd.date_range("2026-04-01", periods=4, freq="h"))
    assert stored.value.tolist() == [1.0, 2.0, 3.0, 1.0]
    assert [t.table_id for t in wh.client.list_tables(wh.dataset)] == ["fact_meter_hourly"]


def test_upsert_counts_rows_on_a_server_that_reports_no_dml_statistics(tmp_path):
    """BigQuery reports rows inserted and updated per MERGE; where a server does not, the
    counts come from the table's row count and the rows the MERGE touched."""
    with BigQueryEmulator(tmp_path, dml_stats=False) as server:
        wh = new_warehouse(server, "fact_meter_hourly")
        wh.upsert("fact_meter_hourly", meter_rows().iloc[:2])
        counts = wh.upsert("fact_meter_hourly", meter_rows(values=[1.0, 2.0, 3.0]))
        job = wh.client.query(f"UPDATE {wh.table('fact_meter_hourly')} SET unit = unit WHERE TRUE")
        job.result()
    assert job.dml_stats is None  # the server really sends none
    assert (counts.inserted, counts.updated) == (1, 1)


def test_load_uris_merges_parquet_files_a_participant_put_in_cloud_storage(bigquery, gcs):
    client = storage.Client(
        project="test-project",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=gcs[0]),
    )
    client.create_bucket("acme-lake")
    bucket = GcsStorage(client, "acme-lake", "acme")
    days = pd.date_range("2026-04-01T00:00Z", periods=48, freq="h")

    def put(day: str, hours: pd.DatetimeIndex, values) -> None:
        buffer = io.BytesIO()
        meter_rows(hours, values).to_parquet(buffer, index=False)  # tz-aware: UTC in Parquet
        bucket.write(f"warehouse/fact_meter_hourly/{day}.parquet", buffer.getvalue())

    put("2026-04-01", days[:24], np.arange(24.0))
    put("2026-04-02", days[24:], np.arange(24.0))
    wh = new_warehouse(bigquery, "fact_meter_hourly")
    uris = ["gs://acme-lake/warehouse/fact_meter_hourly/*.parquet"]
    first, again = wh.load_uris("fact_meter_hourly", uris), wh.load_uris("fact_meter_hourly", uris)
    put("2026-04-02", days[24:], np.arange(24.0) + 1)
    changed = wh.load_uris("fact_meter_hourly", uris)
    stored = wh.query(f"SELECT * FROM {wh.table('fact_meter_hourly')} ORDER BY hour_utc")
    assert [(c.inserted, c.updated) for c in (first, again, changed)] == [(48, 0), (0, 0), (0, 24)]
    assert stored.hour_utc.tolist() == list(days.tz_localize(None))
    assert stored.value.tolist() == [*range(24), *range(1, 25)]
    assert [t.table_id for t in wh.client.list_tables(wh.dataset)] == ["fact_meter_hourly"]


def property_hours(participant) -> pd.DataFrame:
    """Seeded hourly rows of every data type for each property, with a missing value and a
    few hours without energy data."""
    rng = np.random.default_rng(13)
    hours = WINDOW.hours()
    frames = []
    for prop in participant.properties:
        for data_type, (mean, swing) in SHAPES.items():
            daily = np.sin(np.arange(len(hours)) * 2 * np.pi / 24)
            value = mean + swing * daily + rng.normal(0, swing / 10, len(hours))
            value[7] = np.nan
            frames.append(
                pd.DataFrame(
                    {
                        "property_id": prop.id,
                        "data_type": data_type,
                        "hour_utc": hours,
                        "value": value,
                        "unit": STANDARD_UNIT[data_type],
                        "quality": rng.choice(["measured", "estimated"], len(hours), p=[0.9, 0.1]),
                        "coverage": rng.choice([1.0, 0.5], len(hours), p=[0.95, 0.05]),
                        "meters_reporting": 1,
                        "meters_expected": 1,
                    }
                )
            )
    rows = pd.concat(frames, ignore_index=True)
    gap = (rows.property_id == "syd-hq") & (rows.data_type == "energy") & (rows.index % 17 == 0)
    return rows[~gap]


def load_the_same_rows(wh) -> None:
    """Configuration (then a changed floor area), factors, calendar and facts, as the flows
    load them."""
    participant = load_participant(demo_data.EXAMPLES / "acme.xml")
    bigger = participant.model_copy(
        update={
            "properties": (
                participant.properties[0].model_copy(update={"floor_area_m2": 6000.0}),
                *participant.properties[1:],
            )
        }
    )
    load_configuration(wh, participant, CONFIGURED)
    load_configuration(wh, bigger, RECONFIGURED)
    load_emission_factors(wh)
    load_calendar(wh, participant, WINDOW.hours())
    rows = property_hours(participant)
    load_property_hours(wh, participant.id, rows)
    by_meter = {
        m.id: rows[(rows.property_id == m.property_id) & (rows.data_type == m.data_type)]
        for m in participant.meters
        if m.id in ("syd-hq-main", "syd-outside", "bne-general")
    }
    load_meter_hours(wh, participant, by_meter)
    # the meters' ETL tasks and health, as a dispatch records them
    window = {"start": WINDOW.start.isoformat(), "end": WINDOW.end.isoformat()}
    outcomes = [MeterOutcome(participant.id, meter, **window) for meter in by_meter]
    ids = [participant.id]
    track(wh, ids, [participant], outcomes, health_thresholds, CONFIGURED, CONFIGURED, WINDOW.end)


@pytest.fixture(scope="module")
def both(bigquery, tmp_path_factory):
    """The same rows loaded into BigQuery (the emulator) and into a DuckDB file."""
    duck = DuckDBWarehouse(tmp_path_factory.mktemp("duck") / "w.duckdb").prepare()
    wh = new_warehouse(bigquery)
    for target in (duck, wh):
        load_the_same_rows(target)
    yield wh, duck
    duck.close()


def test_every_table_and_view_holds_what_duckdb_holds(both):
    wh, duck = both
    relations, with_rows = [*TABLES, *(name for name, _ in VIEWS)], []
    for relation in relations:
        columns = list(duck.query(f"SELECT * FROM {relation} LIMIT 0").columns)
        left = snapshot(duck.query, relation, columns)
        right = snapshot(wh.query, wh.table(relation), columns)
        pd.testing.assert_frame_equal(left, right, check_dtype=False, obj=relation)
        with_rows += [relation] * (len(left) > 0)
    # MRV stays empty, and so do the log of collection runs (these loads are not runs), the
    # portal's API tokens (issued per warehouse) and alerts (no meter is silent at the end).
    empty = ("load_log", "api_token", "alert_incident")
    assert with_rows == [r for r in relations if not r.startswith("mrv_") and r not in empty]


def test_the_portal_answers_as_from_duckdb(both):
    """Every portal query (metrics by hour, local and UTC day and month, gaps, summaries, ...)
    answers on BigQuery what it answers on DuckDB."""
    wh, duck = both
    answered = assert_same_answers(duck, wh, ["acme"], WINDOW)
    assert answered >= {"metrics by hour local", "metrics by month utc", "summary", "quality"}


def test_property_summary_filters_on_timestamps_as_duckdb_does(both):
    wh, duck = both
    window = HourWindow(datetime(2026, 4, 4, tzinfo=UTC), datetime(2026, 4, 6, tzinfo=UTC))
    summary = property_summary(wh, window)
    pd.testing.assert_frame_equal(summary, property_summary(duck, window), check_dtype=False)
    assert summary.hours.tolist() == [48, 48]


def test_the_report_shows_the_same_numbers_as_from_duckdb(both):
    wh, duck = both

    def numbers(warehouse) -> str:
        page = report.build_report(warehouse, "acme", date(2026, 4, 3), date(2026, 4, 7))
        return re.sub(r"<svg.*?</svg>", "", page, flags=re.DOTALL)

    page = numbers(wh)
    assert page == numbers(duck)
    assert "Energy benchmarking: Acme" in page and "<td>syd-hq</td>" in page


def test_date_and_timestamp_parameters_keep_their_types(both):
    wh, _ = both
    calendar = wh.table("dim_calendar")
    by_date = wh.query(
        f"SELECT count(*) AS hours FROM {calendar} WHERE property_id = ? AND local_date = ?",
        ["syd-hq", date(2026, 4, 5)],
    )
    by_time = wh.query(
        f"SELECT count(*) AS hours FROM {calendar} WHERE property_id = ? "
        "AND hour_utc >= ? AND hour_utc < ?",
        ["syd-hq", datetime(2026, 4, 4, 13), datetime(2026, 4, 6, 0, tzinfo=UTC)],
    )
    values = wh.query(
        "SELECT ? AS day, ? AS moment, ? AS n, ? AS x, ? AS flag, ? AS word",
        [date(2026, 4, 5), datetime(2026, 4, 5, 3, tzinfo=UTC), np.int64(3), 0.5, True, "kWh"],
    ).iloc[0]
    assert by_date.hours.tolist() == [25]  # the day the clocks go back
    assert by_time.hours.tolist() == [35]  # 13:00 UTC on the 4th is midnight in Sydney
    assert values.tolist() == [
        pd.Timestamp("2026-04-05"),
        pd.Timestamp("2026-04-05 03:00"),  # naive UTC, as every backend returns it
        3,
        0.5,
        True,
        "kWh",
    ]


def stored_days(storage, participant) -> None:
    """Two UTC days of energy hours for two meters in the participant's storage, plus a meter
    the configuration no longer has."""
    hours = pd.date_range("2026-04-03T00:00Z", periods=48, freq="h")
    for day, part in (("2026-04-03", hours[:24]), ("2026-04-04", hours[24:])):
        rows = pd.concat(
            pd.DataFrame(
                {
                    "meter_id": meter,
                    "hour_utc": part,
                    "value": np.arange(24.0) * scale,
                    "unit": "kWh",
                    "quality": "measured",
                    "coverage": 1.0,
                    "fetch": "run-1",
                    "made_with": "v1",
                }
            )
            for meter, scale in (("syd-hq-main", 1.0), ("bne-general", 2.0), ("gone", 9.0))
        )
        upsert_day(storage, "energy", day, rows, empty_day())


def test_a_load_from_the_bucket_takes_the_day_files_by_load_job_as_duckdb_reads_them(
    bigquery, gcs, tmp_path
):
    client = storage.Client(
        project="test-project",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=gcs[0]),
    )
    client.create_bucket("acme-hours")
    participant = load_participant(demo_data.EXAMPLES / "acme.xml")
    bucket, local = GcsStorage(client, "acme-hours", "acme"), LocalStorage(tmp_path, "acme")
    for where in (bucket, local):
        stored_days(where, participant)
    # The last 30 hours: a window ending mid-day, on two day files.
    window = HourWindow(datetime(2026, 4, 3, 18, tzinfo=UTC), datetime(2026, 4, 5, tzinfo=UTC))
    stored = StoredRows(
        uris=[bucket.uri(day_key("energy", d)) for d in ("2026-04-03", "2026-04-04")],
        schema=DAY_SCHEMA,
        constants={"participant_id": "acme", "data_type": "energy"},
        start=window.start,
        end=window.end,
        meters=["syd-hq-main", "bne-general"],
    )
    wh = new_warehouse(bigquery, "fact_meter_hourly")
    direct = wh.upsert_stored("fact_meter_hourly", stored)
    assert (direct.inserted, direct.updated) == (60, 0)  # 30 hours of the two meters, not "gone"

    wh = new_warehouse(bigquery)
    duck = DuckDBWarehouse(tmp_path / "w.duckdb")
    first = load_hours(wh, bucket, participant, window, CONFIGURED)
    again = load_hours(wh, bucket, participant, window, CONFIGURED)
    load_hours(duck, local, participant, window, CONFIGURED)
    columns = TABLES["fact_meter_hourly"].column_names
    facts = snapshot(wh.query, wh.table("fact_meter_hourly"), columns)
    pd.testing.assert_frame_equal(
        facts, snapshot(duck.query, "fact_meter_hourly", columns), check_dtype=False
    )
    assert sorted(set(facts.meter_id)) == ["bne-general", "syd-hq-main"]
    assert facts.hour_utc.min() == pd.Timestamp("2026-04-03 18:00")
    assert (again.inserted, again.updated) == (0, 0) and first.inserted > again.inserted
    duck.close()
