"""The BigQuery warehouse block, apart from the others: it imports prefect-gcp."""

from __future__ import annotations

from prefect.blocks.core import Block
from prefect_gcp import GcpCredentials

from meterflow.warehouse import Warehouse


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
