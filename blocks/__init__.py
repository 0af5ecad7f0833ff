"""Prefect block types. Participant XML names blocks; blocks hold endpoints and secrets.

Register them with `prefect block register -m blocks`. S3 meters use prefect-aws'
`AwsCredentials` block; the others use the blocks defined here.
"""

import importlib

# Each name is imported from its module when first used, so that a worker process that needs
# the credentials blocks does not import the cloud SDKs the storage and warehouse blocks need.
_MODULES = {
    "BigQueryWarehouseBlock": "blocks.bigquery",
    "DuckDBWarehouseBlock": "blocks.warehouse",
    "ElectricityMapsCredentials": "blocks.credentials",
    "GuardianPolicy": "blocks.guardian",
    "OpenMeteoSource": "blocks.credentials",
    "ParticipantStorage": "blocks.participant_storage",
    "PostgresWarehouseBlock": "blocks.warehouse",
    "SolcastCredentials": "blocks.credentials",
    "SourceBlocks": "blocks.resolve",
    "WattwatchersCredentials": "blocks.credentials",
    "load_policy": "blocks.guardian",
    "open_warehouse": "blocks.warehouse",
}

__all__ = [
    "BigQueryWarehouseBlock",
    "DuckDBWarehouseBlock",
    "ElectricityMapsCredentials",
    "GuardianPolicy",
    "OpenMeteoSource",
    "ParticipantStorage",
    "PostgresWarehouseBlock",
    "SolcastCredentials",
    "SourceBlocks",
    "WattwatchersCredentials",
    "load_policy",
    "open_warehouse",
]


def __getattr__(name: str):
    if name in _MODULES:
        return getattr(importlib.import_module(_MODULES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:  # `prefect block register -m blocks` finds the block types here
    return sorted(__all__)
