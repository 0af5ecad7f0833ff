"""One interface over the warehouse backends; DuckDB and PostgreSQL share the SQL upsert.

An upsert stages the rows, counts which are new and which differ, and writes only those with
`INSERT .. ON CONFLICT .. DO UPDATE` in one transaction: a rerun writes nothing and says so.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import pandas as pd

from meterflow.warehouse.schema import TABLES
from meterflow.warehouse.views import view_statements


@dataclass(frozen=True)
class LoadCounts:
    inserted: int = 0
    updated: int = 0

    def __add__(self, other: LoadCounts) -> LoadCounts:
        return LoadCounts(self.inserted + other.inserted, self.updated + other.updated)


def prepare(rows: pd.DataFrame) -> pd.DataFrame:
    """Naive UTC timestamps and NULL (not NaN) for missing values, as every backend stores."""
    rows = rows.copy()
    for column in rows.columns:
        if isinstance(rows[column].dtype, pd.DatetimeTZDtype):
            rows[column] = rows[column].dt.tz_convert("UTC").dt.tz_localize(None)
    return rows.astype(object).where(rows.notna(), None).replace({np.nan: None})


class Warehouse(ABC):
    """A warehouse connection: schema, upserts, queries, views."""

    dialect: str

    @abstractmethod
    def upsert(self, table: str, rows: pd.DataFrame) -> LoadCounts:
        """MERGE rows into a table on its natural key."""

    @abstractmethod
    def query(self, sql: str, params: list | None = None) -> pd.DataFrame: ...

    @abstractmethod
    def execute(self, sql: str, params: list | None = None) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def table(self, name: str) -> str:
        """The table's name as this backend addresses it (schema- or dataset-qualified)."""
        return name

    def prepare(self) -> Warehouse:
        """Create missing tables and (re)create the views; safe to run on every load."""
        for table in TABLES.values():
            self.execute(table.ddl(self.dialect, self.table(table.name)))
        for statement in view_statements(self.dialect, self.table):
            self.execute(statement)
        return self

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SqlWarehouse(Warehouse):
    """DuckDB and PostgreSQL: staged rows, counted, then INSERT .. ON CONFLICT DO UPDATE."""

    @abstractmethod
    def _stage(self, table: str, rows: pd.DataFrame) -> str:
        """Put rows shaped like `table` in a temporary relation and return its name."""

    @abstractmethod
    def transaction(self):
        """A context manager around one transaction."""

    def upsert(self, table: str, rows: pd.DataFrame) -> LoadCounts:
        if rows.empty:
            return LoadCounts()
        spec = TABLES[table]
        rows = prepare(rows[spec.column_names])
        target, keys = self.table(table), spec.key
        values = [c for c in spec.column_names if c not in keys]
        on = " AND ".join(f"t.{k} = i.{k}" for k in keys)
        differs = " OR ".join(f"i.{c} IS DISTINCT FROM t.{c}" for c in values) or "FALSE"
        columns = ", ".join(spec.column_names)
        with self.transaction():
            staged = self._stage(table, rows)
            self.execute(
                f"CREATE TEMP TABLE pending AS SELECT i.*, t.{keys[0]} IS NULL AS is_new "
                f"FROM {staged} i LEFT JOIN {target} t ON {on} "
                f"WHERE t.{keys[0]} IS NULL OR {differs}"
            )
            counts = self.query(
                "SELECT count(*) FILTER (WHERE is_new) AS inserted, "
                "count(*) FILTER (WHERE NOT is_new) AS updated FROM pending"
            ).iloc[0]
            updates = ", ".join(f"{c} = excluded.{c}" for c in values)
            self.execute(
                f"INSERT INTO {target} ({columns}) SELECT {columns} FROM pending "
                f"ON CONFLICT ({', '.join(keys)}) DO "
                + (f"UPDATE SET {updates}" if updates else "NOTHING")
            )
            self.execute("DROP TABLE pending")
        return LoadCounts(int(counts["inserted"]), int(counts["updated"]))
