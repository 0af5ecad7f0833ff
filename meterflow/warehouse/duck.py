"""DuckDB file backend (the embedded default)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

from meterflow.warehouse.backend import LoadCounts, SqlWarehouse, StoredRows, naive_utc


class DuckDBWarehouse(SqlWarehouse):
    dialect = "duckdb"

    def __init__(self, path: str | Path, read_only: bool = False):
        if not read_only:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(path), read_only=read_only)

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        return self.con.execute(sql, params or []).df()

    def execute(self, sql: str, params: list | None = None) -> None:
        self.con.execute(sql, params or [])

    def close(self) -> None:
        self.con.close()

    def staged_rows(self, rows: pd.DataFrame) -> pd.DataFrame:
        return naive_utc(rows)  # DuckDB reads NaN and None in a data frame as NULL

    def _stage(self, table: str, rows: pd.DataFrame) -> str:
        self.con.register("incoming", rows)
        return "incoming"

    def upsert_stored(self, table: str, stored: StoredRows) -> LoadCounts | None:
        return self.upsert_stored_many(table, [stored])

    def upsert_stored_many(self, table: str, stored: list[StoredRows]) -> LoadCounts | None:
        """Local Parquet files are read by DuckDB itself, no rows through Python: every set in
        one statement and one MERGE."""
        if any("://" in uri for each in stored for uri in each.uris):
            return None
        selects, params = [], []
        for each in stored:
            if not each.uris:
                continue
            files = ", ".join("'" + uri.replace("'", "''") + "'" for uri in each.uris)
            select, values = each.select(
                table, f"read_parquet([{files}])", lambda c: f"timezone('UTC', {c})"
            )
            selects.append(select)
            params += values
        if not selects:
            return LoadCounts()
        with self.transaction():
            self.execute(f"CREATE TEMP TABLE stored AS {' UNION ALL '.join(selects)}", params)
            counts = self._merge(table, "stored")
            self.execute("DROP TABLE stored")
        return counts

    @contextmanager
    def transaction(self):
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        finally:
            self.con.unregister("incoming")
