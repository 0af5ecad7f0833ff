"""Turn the block a meter names into what its connector needs, with errors that name both."""

from __future__ import annotations

import importlib
from typing import Any

from meterflow.collection.sources import SourceAccess
from meterflow.common.errors import MeterflowError
from meterflow.configuration.config import Meter

# The block type of each API connector, in blocks.credentials: imported (with Prefect) only for
# a meter that needs one, so that a worker process collecting file meters never loads Prefect.
BLOCK_TYPES = {
    "wattwatchers": "WattwatchersCredentials",
    "solcast": "SolcastCredentials",
    "weather": "OpenMeteoSource",
    "electricitymaps": "ElectricityMapsCredentials",
}


def block_type_for(kind: str) -> type | None:
    """The credentials block type a connector type reads, if any."""
    if kind not in BLOCK_TYPES:
        return None
    return getattr(importlib.import_module("blocks.credentials"), BLOCK_TYPES[kind])


class SourceBlocks:
    """The blocks a shard's meters name, each loaded once: a fleet of meters sharing one block
    costs one round trip to Prefect's API (about 25-50 ms here), not one per meter. Kept for
    one shard only, so that a key changed in the block is used by the next shard."""

    def __init__(self) -> None:
        self._blocks: dict[tuple[type, str], Any] = {}
        self._s3_clients: dict[str, Any] = {}

    def access(self, meter: Meter) -> SourceAccess | None:
        """The endpoint and key of an API meter (weather without a block uses Open-Meteo
        itself)."""
        kind = meter.connector.type
        block_type = block_type_for(kind)
        if block_type is None:
            return None
        if meter.credentials is None:
            return block_type().access("open-meteo") if kind == "weather" else None
        return self._load(block_type, meter).access(meter.credentials)

    def s3_client(self, meter: Meter) -> Any:
        """A boto3 S3 client from the meter's prefect-aws AwsCredentials block."""
        if meter.credentials not in self._s3_clients:
            from prefect_aws import AwsCredentials

            block = self._load(AwsCredentials, meter)
            self._s3_clients[meter.credentials] = block.get_s3_client()
        return self._s3_clients[meter.credentials]

    def _load(self, block_type: type, meter: Meter):
        """The block, or an error naming the meter (a missing block is asked for once)."""
        key = (block_type, meter.credentials)
        if key not in self._blocks:
            try:
                self._blocks[key] = block_type.load(meter.credentials)
            except (ValueError, KeyError) as exc:
                self._blocks[key] = exc
        found = self._blocks[key]
        if isinstance(found, Exception):
            slug = block_type.get_block_type_slug()
            raise MeterflowError(
                f"meter {meter.id}: cannot load block {slug}/{meter.credentials}: {found}. "
                f"Create it in the Prefect UI or with {block_type.__name__}(...).save("
                f"'{meter.credentials}')"
            )
        return found
