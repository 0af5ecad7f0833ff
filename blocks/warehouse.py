"""Warehouse blocks: which backend a deployment loads, chosen in the Prefect UI by name.

Flows take `warehouse` as either a DuckDB file path (the default, `data/warehouse.duckdb`) or
a block reference `<block-type-slug>/<name>`, e.g. `meterflow-postgresql/analytics`.
"""

from __future__ import annotations

import importlib

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from meterflow.warehouse import DuckDBWarehouse, Warehouse


class DuckDBWarehouseBlock(Block):
    """An embedded DuckDB file."""

    _block_type_name = "Meterflow DuckDB"
    path: str = Field(default="data/warehouse.duckdb")

    def open(self) -> Warehouse:
        return DuckDBWarehouse(self.path)


class PostgresWarehouseBlock(Block):
    """A PostgreSQL database; tables and views live in `schema_name`."""

    _block_type_name = "Meterflow PostgreSQL"
    host: str = "127.0.0.1"
    port: int = 5432
    database: str
    user: str = "postgres"
    password: SecretStr | None = None
    schema_name: str = "meterflow"

    def open(self) -> Warehouse:
        from psycopg.conninfo import make_conninfo

        from meterflow.warehouse.postgres import PostgresWarehouse

        secret = self.password.get_secret_value() if self.password else None
        dsn = make_conninfo(
            host=self.host, port=self.port, dbname=self.database, user=self.user, password=secret
        )
        return PostgresWarehouse(dsn, self.schema_name)


# Block type slug -> (module, class): the BigQuery block's module imports prefect-gcp and the
# Google client libraries, which a flow loading DuckDB or PostgreSQL never needs.
BLOCKS = {
    "meterflow-duckdb": ("blocks.warehouse", "DuckDBWarehouseBlock"),
    "meterflow-postgresql": ("blocks.warehouse", "PostgresWarehouseBlock"),
    "meterflow-bigquery": ("blocks.bigquery", "BigQueryWarehouseBlock"),
}


def open_warehouse(spec: str) -> Warehouse:
    """A DuckDB path, or `<slug>/<name>` of a saved warehouse block."""
    slug, _, name = spec.partition("/")
    if slug in BLOCKS and name:
        module, block_type = BLOCKS[slug]
        return getattr(importlib.import_module(module), block_type).load(name).open()
    return DuckDBWarehouse(spec)
