"""DuckDB file backend (the embedded default)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

from meterflow.warehouse.backend import SqlWarehouse


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

    def _stage(self, table: str, rows: pd.DataFrame) -> str:
        self.con.register("incoming", rows)
        return "incoming"

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
