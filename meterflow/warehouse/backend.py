"""One interface over the warehouse backends; DuckDB and PostgreSQL share the SQL upsert.

An upsert stages the rows, counts which are new and which differ, and writes only those with
`INSERT .. ON CONFLICT .. DO UPDATE` in one transaction (an UPDATE and an INSERT for the tables
DuckDB keeps no key index for): a rerun writes nothing and says so.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from meterflow.configuration.ids import check_identifier
from meterflow.warehouse.schema import TABLES, TYPES
from meterflow.warehouse.views import view_statements


@dataclass(frozen=True)
class LoadCounts:
    inserted: int = 0
    updated: int = 0

    def __add__(self, other: LoadCounts) -> LoadCounts:
        return LoadCounts(self.inserted + other.inserted, self.updated + other.updated)


@dataclass(frozen=True)
class StoredRows:
    """Rows a load can take straight from stored Parquet files (the standardised day files):
    their URIs and schema, the values of the table's columns the files lack, and which rows
    it keeps."""

    uris: list[str]
    schema: pa.Schema
    constants: dict[str, str]
    start: datetime
    end: datetime
    meters: list[str]

    def select(self, table: str, source: str, utc: Callable[[str], str]) -> tuple[str, list]:
        """SELECT the table's columns from `source` (the files as a relation) with the
        filter, `?` parameters; `utc(column)` turns a stored UTC timestamp into the column."""
        columns, params = [], []
        for name, kind, _ in TABLES[table].columns:
            if name in self.constants:
                columns.append(f"? AS {name}")
                params.append(self.constants[name])
            else:
                columns.append(f"{utc(name)} AS {name}" if kind == "ts" else name)
        meters = identifier_list(self.meters, "meter id")
        return (
            f"SELECT {', '.join(columns)} FROM {source} "
            f"WHERE hour_utc >= ? AND hour_utc < ? AND meter_id IN ({meters})",
            [*params, self.start, self.end],
        )


def identifier_list(identifiers: list[str], what: str) -> str:
    """Strict identifiers (no quote can occur) as a literal SQL list: every dialect takes it,
    where an array parameter it does not."""
    return ", ".join(f"'{check_identifier(i, what)}'" for i in identifiers) or "NULL"


def naive_utc(rows: pd.DataFrame) -> pd.DataFrame:
    """Timestamps as naive UTC, as every backend stores them."""
    rows = rows.copy()
    for column in rows.columns:
        if isinstance(rows[column].dtype, pd.DatetimeTZDtype):
            rows[column] = rows[column].dt.tz_convert("UTC").dt.tz_localize(None)
    return rows


def prepare(rows: pd.DataFrame) -> pd.DataFrame:
    """Naive UTC timestamps and NULL (not NaN) for missing values, as every backend stores."""
    rows = naive_utc(rows)
    return rows.astype(object).where(rows.notna(), None).replace({np.nan: None})


class Warehouse(ABC):
    """A warehouse connection: schema, upserts, queries, views."""

    dialect: str

    @abstractmethod
    def upsert(self, table: str, rows: pd.DataFrame) -> LoadCounts:
        """MERGE rows into a table on its natural key."""

    def upsert_stored(self, table: str, stored: StoredRows) -> LoadCounts | None:
        """MERGE rows straight from stored files when this backend reads their URIs (None when
        it cannot: the caller upserts the rows it read itself)."""
        return None

    def upsert_stored_many(self, table: str, stored: list[StoredRows]) -> LoadCounts | None:
        """upsert_stored for several sets of files (None when this backend reads none of them)."""
        counts = LoadCounts()
        for each in stored:
            loaded = self.upsert_stored(table, each)
            if loaded is None:
                return None
            counts += loaded
        return counts

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
        """Create missing tables and (re)create the views, unless the warehouse already has
        this version of them (a load may call it every time)."""
        if getattr(self, "_prepared", False):
            return self
        tables = [t.ddl(self.dialect, self.table(t.name)) for t in TABLES.values()]
        views = view_statements(self.dialect, self.table)
        version = hashlib.sha256("\n".join(tables + views).encode()).hexdigest()[:16]
        marker = self.table("meterflow_schema")
        self.execute(f"CREATE TABLE IF NOT EXISTS {marker} (version {TYPES[self.dialect]['text']})")
        if version not in set(self.query(f"SELECT version FROM {marker}")["version"]):
            from meterflow.warehouse.legacy import migrate  # it needs the MRV and job modules

            for statement in tables:
                self.execute(statement)
            migrate(self)  # before the views, which may read the columns it adds
            for statement in views:
                self.execute(statement)
            self.execute(f"DELETE FROM {marker} WHERE TRUE")
            self.execute(f"INSERT INTO {marker} VALUES (?)", [version])
        self._prepared = True
        return self

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SqlWarehouse(Warehouse):
    """DuckDB and PostgreSQL: staged rows, counted, then INSERT .. ON CONFLICT DO UPDATE (an
    UPDATE and an INSERT where the table declares no key: DuckDB's fact tables)."""

    def staged_rows(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The rows as `_stage` takes them."""
        return prepare(rows)

    @abstractmethod
    def _stage(self, table: str, rows: pd.DataFrame) -> str:
        """Put rows shaped like `table` in a temporary relation and return its name."""

    @abstractmethod
    def transaction(self):
        """A context manager around one transaction."""

    def upsert(self, table: str, rows: pd.DataFrame) -> LoadCounts:
        if rows.empty:
            return LoadCounts()
        rows = self.staged_rows(rows[TABLES[table].column_names])
        with self.transaction():
            return self._merge(table, self._stage(table, rows))

    def _merge(self, table: str, staged: str) -> LoadCounts:
        """Write the staged relation's new and differing rows (inside a transaction)."""
        spec = TABLES[table]
        target, keys = self.table(table), spec.key
        values = [c for c in spec.column_names if c not in keys]
        on = " AND ".join(f"t.{k} = i.{k}" for k in keys)
        differs = " OR ".join(f"i.{c} IS DISTINCT FROM t.{c}" for c in values) or "FALSE"
        columns = ", ".join(spec.column_names)
        self.execute(
            f"CREATE TEMP TABLE pending AS SELECT i.*, t.{keys[0]} IS NULL AS is_new "
            f"FROM {staged} i LEFT JOIN {target} t ON {on} "
            f"WHERE t.{keys[0]} IS NULL OR {differs}"
        )
        counts = self.query(
            "SELECT count(*) FILTER (WHERE is_new) AS inserted, "
            "count(*) FILTER (WHERE NOT is_new) AS updated FROM pending"
        ).iloc[0]
        inserted, updated = int(counts["inserted"]), int(counts["updated"])
        if spec.declares_key(self.dialect):
            updates = ", ".join(f"{c} = excluded.{c}" for c in values)
            self.execute(
                f"INSERT INTO {target} ({columns}) SELECT {columns} FROM pending "
                f"ON CONFLICT ({', '.join(keys)}) DO "
                + (f"UPDATE SET {updates}" if updates else "NOTHING")
            )
        else:
            self._refuse_repeated_keys(table, keys)
            if updated:
                sets = ", ".join(f"{c} = p.{c}" for c in values)
                matches = " AND ".join(f"{target}.{k} = p.{k}" for k in keys)
                self.execute(
                    f"UPDATE {target} SET {sets} FROM pending p WHERE NOT p.is_new AND {matches}"
                )
            if inserted:
                self.execute(
                    f"INSERT INTO {target} ({columns}) SELECT {columns} FROM pending WHERE is_new"
                )
        self.execute("DROP TABLE pending")
        return LoadCounts(inserted, updated)

    def _refuse_repeated_keys(self, table: str, keys: tuple[str, ...]) -> None:
        """A key twice among the rows to write is refused, as a declared key refuses it."""
        repeated = self.query(
            f"SELECT {', '.join(keys)} FROM pending GROUP BY {', '.join(keys)} "
            "HAVING count(*) > 1 LIMIT 1"
        )
        if not repeated.empty:
            raise ValueError(
                f"{table}: key {repeated.iloc[0].to_dict()} given more than once in one load"
            )
