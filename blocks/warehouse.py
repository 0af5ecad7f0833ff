"""Warehouse blocks: which backend a deployment loads, chosen in the Prefect UI by name.

Flows take `warehouse` as either a DuckDB file path (the default, `data/warehouse.duckdb`) or
a block reference `<block-type-slug>/<name>`, e.g. `meterflow-postgresql/analytics`.
"""

from __future__ import annotations

from prefect.blocks.core import Block
from prefect_gcp import GcpCredentials
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


class BigQueryWarehouseBlock(Block):
    """A BigQuery dataset, reached with prefect-gcp's GcpCredentials."""

    _block_type_name = "Meterflow BigQuery"
    gcp_credentials: GcpCredentials
    dataset: str
    location: str = "australia-southeast1"

    def open(self) -> Warehouse:
        from meterflow.warehouse.bigquery import BigQueryWarehouse

        client = self.gcp_credentials.get_bigquery_client(location=self.location)
        return BigQueryWarehouse(client, self.dataset)


BLOCKS = {
    b.get_block_type_slug(): b
    for b in (DuckDBWarehouseBlock, PostgresWarehouseBlock, BigQueryWarehouseBlock)
}


def open_warehouse(spec: str) -> Warehouse:
    """A DuckDB path, or `<slug>/<name>` of a saved warehouse block."""
    slug, _, name = spec.partition("/")
    if slug in BLOCKS and name:
        return BLOCKS[slug].load(name).open()
    return DuckDBWarehouse(spec)
