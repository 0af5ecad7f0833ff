"""PostgreSQL backend: a schema per deployment; rows staged with COPY, merged with ON CONFLICT."""

from __future__ import annotations

from contextlib import contextmanager

import pandas as pd
import psycopg
from psycopg import sql as pgsql

from meterflow.configuration.ids import check_identifier
from meterflow.warehouse.backend import SqlWarehouse


class PostgresWarehouse(SqlWarehouse):
    dialect = "postgres"

    def __init__(self, dsn: str, schema: str = "meterflow"):
        self.schema = check_identifier(schema, "schema name")
        self.con = psycopg.connect(dsn, autocommit=True)
        self.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        self.execute(f'SET search_path TO "{self.schema}"')

    def table(self, name: str) -> str:
        return f'"{self.schema}".{name}'

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        with self.con.cursor() as cursor:
            cursor.execute(sql.replace("?", "%s"), params or None)
            columns = [c.name for c in cursor.description]
            return pd.DataFrame(cursor.fetchall(), columns=columns)

    def execute(self, sql: str, params: list | None = None) -> None:
        with self.con.cursor() as cursor:
            cursor.execute(sql.replace("?", "%s") if params else sql, params or None)

    def close(self) -> None:
        self.con.close()

    def _stage(self, table: str, rows: pd.DataFrame) -> str:
        self.execute(f"CREATE TEMP TABLE incoming (LIKE {self.table(table)}) ON COMMIT DROP")
        columns = pgsql.SQL(", ").join(pgsql.Identifier(c) for c in rows.columns)
        with (
            self.con.cursor() as cursor,
            cursor.copy(pgsql.SQL("COPY incoming ({}) FROM STDIN").format(columns)) as copy,
        ):
            for row in rows.itertuples(index=False, name=None):
                copy.write_row(row)
        return "incoming"

    @contextmanager
    def transaction(self):
        with self.con.transaction():
            yield
