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


def access_for(meter: Meter) -> SourceAccess | None:
    """The endpoint and key of an API meter (weather without a block uses Open-Meteo itself)."""
    kind = meter.connector.type
    block_type = block_type_for(kind)
    if block_type is None:
        return None
    if meter.credentials is None:
        return block_type().access("open-meteo") if kind == "weather" else None
    return _load(block_type, meter).access(meter.credentials)


def s3_client_for(meter: Meter) -> Any:
    """A boto3 S3 client from the meter's prefect-aws AwsCredentials block."""
    from prefect_aws import AwsCredentials

    return _load(AwsCredentials, meter).get_s3_client()


def _load(block_type: type, meter: Meter):
    try:
        return block_type.load(meter.credentials)
    except (ValueError, KeyError) as exc:
        slug = block_type.get_block_type_slug()
        raise MeterflowError(
            f"meter {meter.id}: cannot load block {slug}/{meter.credentials}: {exc}. "
            f"Create it in the Prefect UI or with {block_type.__name__}(...).save("
            f"'{meter.credentials}')"
        ) from None
