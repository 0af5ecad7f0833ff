"""Prefect block types. Participant XML names blocks; blocks hold endpoints and secrets.

Register them with `prefect block register -m blocks`. S3 meters use prefect-aws'
`AwsCredentials` block; the others use the blocks defined here.
"""

from blocks.credentials import OpenMeteoSource, SolcastCredentials, WattwatchersCredentials
from blocks.guardian import GuardianPolicy, load_policy
from blocks.resolve import access_for, s3_client_for
from blocks.storage import ParticipantStorage
from blocks.warehouse import (
    BigQueryWarehouseBlock,
    DuckDBWarehouseBlock,
    PostgresWarehouseBlock,
    open_warehouse,
)

__all__ = [
    "BigQueryWarehouseBlock",
    "DuckDBWarehouseBlock",
    "GuardianPolicy",
    "OpenMeteoSource",
    "ParticipantStorage",
    "PostgresWarehouseBlock",
    "SolcastCredentials",
    "WattwatchersCredentials",
    "access_for",
    "load_policy",
    "open_warehouse",
    "s3_client_for",
]
