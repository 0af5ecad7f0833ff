"""BigQuery backend: a load job into a staging table, then one MERGE per load.

Rows come from a DataFrame (`upsert`, sent as Parquet) or from Parquet files in Cloud Storage
(`load_uris`); both stage, MERGE on the natural key and drop the staging table. Neither way goes
through the client's DataFrame helpers (deprecated for pandas-gbq, and printing a FutureWarning
on every load) or needs db-dtypes. The tests run this class with the
real google-cloud-bigquery client against a BigQuery API server on loopback (bqemulator, see
emulators/bigquery.py); docs/warehouse.md says what that covers and what real BigQuery may still
do differently.
"""

from __future__ import annotations

import io
import numbers
import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from meterflow.common.frames import to_arrow
from meterflow.warehouse.backend import LoadCounts, StoredRows, Warehouse, prepare
from meterflow.warehouse.schema import TABLES, TYPES

ARROW_TYPES = {
    "text": pa.string(),
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "ts": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
}

_KINDS = {arrow: kind for kind, arrow in ARROW_TYPES.items()}


class BigQueryWarehouse(Warehouse):
    dialect = "bigquery"

    def __init__(self, client: Any, dataset: str):
        self.client, self.dataset = client, dataset

    def table(self, name: str) -> str:
        return f"`{self.table_id(name)}`"

    def table_id(self, name: str) -> str:
        """`project.dataset.name`, as the client's table arguments take it."""
        return f"{self.client.project}.{self.dataset}.{name}"

    def merge_sql(self, table: str, source: str) -> str:
        """MERGE rows from `source` (a table or a subquery): insert new keys, update rows whose
        values differ."""
        spec = TABLES[table]
        keys, values = spec.key, [c for c in spec.column_names if c not in spec.key]
        on = " AND ".join(f"T.{k} = S.{k}" for k in keys)
        differs = " OR ".join(f"T.{c} IS DISTINCT FROM S.{c}" for c in values)
        updates = ", ".join(f"{c} = S.{c}" for c in values)
        columns = ", ".join(spec.column_names)
        inserts = ", ".join(f"S.{c}" for c in spec.column_names)
        return (
            f"MERGE INTO {self.table(table)} T USING {source} S ON {on}\n"
            + (f"WHEN MATCHED AND ({differs}) THEN UPDATE SET {updates}\n" if values else "")
            + f"WHEN NOT MATCHED THEN INSERT ({columns}) VALUES ({inserts})"
        )

    def upsert(self, table: str, rows: pd.DataFrame) -> LoadCounts:
        if rows.empty:
            return LoadCounts()
        parquet = io.BytesIO()
        pq.write_table(_arrow(table, rows), parquet)
        parquet.seek(0)
        return self._merge_staged(
            table,
            lambda staging, config: self.client.load_table_from_file(
                parquet, staging, job_config=config
            ),
        )

    def load_uris(self, table: str, uris: list[str]) -> LoadCounts:
        """MERGE Parquet files from Cloud Storage (`gs://bucket/path`, `*` wildcards allowed)
        into `table`. The files hold the table's columns by name, timestamps as UTC (a tz-aware
        column: BigQuery reads a naive Parquet timestamp as a DATETIME)."""
        return self._merge_staged(
            table,
            lambda staging, config: self.client.load_table_from_uri(
                uris, staging, job_config=config
            ),
        )

    def upsert_stored(self, table: str, stored: StoredRows) -> LoadCounts | None:
        """Files in Cloud Storage go in by a load job from their URIs (as their columns are, the
        filter and the missing columns applied by the MERGE); no rows through Python."""
        if not all(uri.startswith("gs://") for uri in stored.uris):
            return None
        if not stored.uris:
            return LoadCounts()
        return self._merge_staged(
            table,
            lambda staging, config: self.client.load_table_from_uri(
                stored.uris, staging, job_config=config
            ),
            lambda staging: stored.select(table, f"`{staging}`", lambda c: c),
            [(field.name, _KINDS[field.type], True) for field in stored.schema],
        )

    def _merge_staged(
        self,
        table: str,
        load: Callable[[str, Any], Any],
        source: Callable[[str], tuple[str, list]] | None = None,
        columns: list[tuple[str, str, bool]] | None = None,
    ) -> LoadCounts:
        """Load Parquet into a new staging table with `load`, MERGE it (all of it, or the rows
        `source` selects from it), drop it. The files hold the table's columns, or `columns`."""
        from google.cloud import bigquery

        schema = [
            bigquery.SchemaField(
                name, TYPES["bigquery"][kind], "NULLABLE" if nullable else "REQUIRED"
            )
            for name, kind, nullable in columns or TABLES[table].columns
        ]
        config = bigquery.LoadJobConfig(
            schema=schema, source_format="PARQUET", write_disposition="WRITE_TRUNCATE"
        )
        staging = self.table_id(f"_staging_{table}_{uuid.uuid4().hex[:12]}")
        try:
            # Counted while the load runs, for a server that reports no dmlStats (BigQuery
            # always does); a whole-table count reads only metadata, so it costs nothing.
            counting = self._count(table)
            load(staging, config).result()
            rows_before = _single(counting)
            select, params = source(staging) if source else (f"SELECT * FROM `{staging}`", [])
            job = self._query(self.merge_sql(table, f"({select})"), params)
            job.result()
            if job.dml_stats is not None:
                return LoadCounts(job.dml_stats.inserted_row_count, job.dml_stats.updated_row_count)
            # This MERGE deletes nothing: the table grew by exactly the rows it inserted.
            inserted = _single(self._count(table)) - rows_before
            return LoadCounts(inserted, (job.num_dml_affected_rows or 0) - inserted)
        finally:
            self.client.delete_table(staging, not_found_ok=True)

    def _count(self, table: str) -> Any:
        return self.client.query(f"SELECT count(*) FROM {self.table(table)}")

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        """Rows as the other backends give them: naive UTC timestamps, dates as datetime64."""
        result = self._run(sql, params).to_arrow(create_bqstorage_client=False)
        frame = result.to_pandas(date_as_object=False)
        for column in frame.columns:
            if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
                frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
        return frame

    def execute(self, sql: str, params: list | None = None) -> None:
        self._run(sql, params)

    def _run(self, sql: str, params: list | None) -> Any:
        return self._query(sql, params).result()

    def _query(self, sql: str, params: list | None) -> Any:
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter(None, *_typed(p)) for p in params or []]
        )
        return self.client.query(sql, job_config=config)

    def close(self) -> None:
        self.client.close()


def _arrow(table: str, rows: pd.DataFrame) -> pa.Table:
    """Rows as Parquet-ready Arrow columns of the table's BigQuery types (naive times are UTC).
    Every field is nullable here: BigQuery itself refuses a NULL in a REQUIRED column."""
    spec = TABLES[table]
    schema = pa.schema([pa.field(name, ARROW_TYPES[kind]) for name, kind, _ in spec.columns])
    return to_arrow(prepare(rows[spec.column_names]), schema)


def _single(job: Any) -> int:
    return next(iter(job.result()))[0]


def _typed(value: Any) -> tuple[str, Any]:
    """A positional parameter's BigQuery type and value: a date is a DATE (BigQuery compares a
    DATE column with a DATE only), a datetime a TIMESTAMP (naive means UTC), numpy scalars as
    the Python numbers they are."""
    if isinstance(value, bool | np.bool_):
        return "BOOL", bool(value)
    if isinstance(value, numbers.Integral):
        return "INT64", int(value)
    if isinstance(value, numbers.Real):
        return "FLOAT64", float(value)
    if isinstance(value, datetime):
        return "TIMESTAMP", value
    if isinstance(value, date):
        return "DATE", value
    return "STRING", value
