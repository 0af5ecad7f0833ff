"""BigQuery cannot be reached from here: drive the backend through a double of
`google.cloud.bigquery.Client` and check the load path and the SQL it sends."""

from __future__ import annotations

from types import SimpleNamespace

import duckdb
import pandas as pd

from meterflow.warehouse.bigquery import BigQueryWarehouse
from meterflow.warehouse.schema import TABLES
from meterflow.warehouse.views import view_statements


class ClientDouble:
    """Records what a google.cloud.bigquery.Client would be asked to do."""

    project = "acme-analytics"

    def __init__(self):
        self.loads, self.queries, self.deleted = [], [], []

    def load_table_from_dataframe(self, frame, destination, job_config):
        self.loads.append((frame, destination, job_config))
        return SimpleNamespace(result=lambda: None)

    def query(self, sql, job_config=None):
        self.queries.append(sql)
        stats = SimpleNamespace(inserted_row_count=2, updated_row_count=1)
        result = SimpleNamespace(to_dataframe=pd.DataFrame)
        return SimpleNamespace(result=lambda: result, dml_stats=stats)

    def delete_table(self, table, not_found_ok=False):
        self.deleted.append(table)


def rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "participant_id": "acme",
            "meter_id": "m1",
            "data_type": "energy",
            "hour_utc": pd.date_range("2026-04-01T00:00Z", periods=3, freq="h"),
            "value": [1.0, None, 3.0],
            "unit": "kWh",
            "quality": "measured",
            "coverage": 1.0,
        }
    )


def test_upsert_loads_a_staging_table_then_merges_and_cleans_up():
    client = ClientDouble()
    counts = BigQueryWarehouse(client, "meterflow").upsert("fact_meter_hourly", rows())
    (frame, staging, config), (merge,) = client.loads[0], client.queries
    assert staging.startswith("acme-analytics.meterflow._staging_fact_meter_hourly_")
    assert config.write_disposition == "WRITE_TRUNCATE"
    assert [f.name for f in config.schema][:4] == [
        "participant_id",
        "meter_id",
        "data_type",
        "hour_utc",
    ]
    assert {f.name: f.field_type for f in config.schema}["hour_utc"] == "TIMESTAMP"
    assert frame["hour_utc"].iloc[0] == pd.Timestamp("2026-04-01 00:00")  # naive UTC
    assert frame["value"].iloc[1] is None  # NULL, not NaN
    assert merge.startswith("MERGE INTO `acme-analytics.meterflow.fact_meter_hourly` T USING")
    assert "ON T.participant_id = S.participant_id AND T.meter_id = S.meter_id AND " in merge
    assert "WHEN MATCHED AND (T.data_type IS DISTINCT FROM S.data_type OR" in merge
    assert "WHEN NOT MATCHED THEN INSERT (participant_id," in merge
    assert client.deleted == [staging]
    assert (counts.inserted, counts.updated) == (2, 1)


def test_the_merge_statement_does_what_it_says_on_a_sql_engine(tmp_path):
    """DuckDB runs MERGE too: the generated statement inserts new keys, updates changed rows
    and leaves equal rows alone (backticks are BigQuery's quoting; DuckDB takes quotes)."""
    wh = BigQueryWarehouse(ClientDouble(), "meterflow")
    merge = wh.merge_sql("fact_meter_hourly", "staging").replace("`", '"')
    merge = merge.replace('"acme-analytics.meterflow.fact_meter_hourly"', "fact_meter_hourly")
    con = duckdb.connect()
    con.execute(TABLES["fact_meter_hourly"].ddl("duckdb"))
    naive = rows().assign(hour_utc=lambda f: f.hour_utc.dt.tz_localize(None))
    con.register("existing", naive.iloc[:2])
    con.execute("INSERT INTO fact_meter_hourly SELECT * FROM existing")
    con.register("changed", naive.assign(value=[1.0, 2.0, 3.0]))
    con.execute('CREATE TABLE "staging" AS SELECT * FROM changed')
    con.execute(merge)
    assert con.execute("SELECT value FROM fact_meter_hourly ORDER BY hour_utc").fetchall() == [
        (1.0,),
        (2.0,),
        (3.0,),
    ]


def test_views_render_for_bigquery_with_qualified_names_and_month_truncation():
    statements = view_statements("bigquery", lambda n: f"`p.d.{n}`")
    assert all(s.startswith("CREATE OR REPLACE VIEW `p.d.v_") for s in statements)
    monthly = next(s for s in statements if "v_carbon_monthly" in s.split(" AS ")[0])
    assert "DATE_TRUNC(local_date, MONTH)" in monthly and "date_trunc('month'" not in monthly
    assert "FROM `p.d.v_carbon_hourly`" in monthly
