"""BigQuery backend: load jobs into a staging table, then one MERGE per load.

BigQuery cannot be reached from the test machine: the tests drive this class through a client
double at the `google.cloud.bigquery.Client` boundary and check the SQL and load calls it makes
(see docs/warehouse.md for exactly what is and is not tested).
"""

from __future__ import annotations

import uuid
from typing import Any

import pandas as pd

from meterflow.warehouse.backend import LoadCounts, Warehouse, prepare
from meterflow.warehouse.schema import TABLES, TYPES


class BigQueryWarehouse(Warehouse):
    dialect = "bigquery"

    def __init__(self, client: Any, dataset: str):
        self.client, self.dataset = client, dataset

    def table(self, name: str) -> str:
        return f"`{self.client.project}.{self.dataset}.{name}`"

    def merge_sql(self, table: str, staging: str) -> str:
        """MERGE staged rows: insert new keys, update rows whose values differ."""
        spec = TABLES[table]
        keys, values = spec.key, [c for c in spec.column_names if c not in spec.key]
        on = " AND ".join(f"T.{k} = S.{k}" for k in keys)
        differs = " OR ".join(f"T.{c} IS DISTINCT FROM S.{c}" for c in values)
        updates = ", ".join(f"{c} = S.{c}" for c in values)
        columns = ", ".join(spec.column_names)
        inserts = ", ".join(f"S.{c}" for c in spec.column_names)
        return (
            f"MERGE INTO {self.table(table)} T USING `{staging}` S ON {on}\n"
            + (f"WHEN MATCHED AND ({differs}) THEN UPDATE SET {updates}\n" if values else "")
            + f"WHEN NOT MATCHED THEN INSERT ({columns}) VALUES ({inserts})"
        )

    def upsert(self, table: str, rows: pd.DataFrame) -> LoadCounts:
        from google.cloud import bigquery

        if rows.empty:
            return LoadCounts()
        spec = TABLES[table]
        staging = f"{self.client.project}.{self.dataset}._staging_{table}_{uuid.uuid4().hex[:12]}"
        schema = [
            bigquery.SchemaField(
                name, TYPES["bigquery"][kind], "NULLABLE" if nullable else "REQUIRED"
            )
            for name, kind, nullable in spec.columns
        ]
        config = bigquery.LoadJobConfig(schema=schema, write_disposition="WRITE_TRUNCATE")
        try:
            frame = prepare(rows[spec.column_names])
            self.client.load_table_from_dataframe(frame, staging, job_config=config).result()
            job = self.client.query(self.merge_sql(table, staging))
            job.result()
            stats = job.dml_stats
            return LoadCounts(stats.inserted_row_count, stats.updated_row_count)
        finally:
            self.client.delete_table(staging, not_found_ok=True)

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter(None, _bq_type(p), p) for p in params or []
            ]
        )
        return self.client.query(sql, job_config=config).result().to_dataframe()

    def execute(self, sql: str, params: list | None = None) -> None:
        self.query(sql, params)

    def close(self) -> None:
        self.client.close()


def _bq_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, pd.Timestamp) or hasattr(value, "isoformat"):
        return "TIMESTAMP"
    return "STRING"
