"""One module per source type; each turns a source's payloads into source readings.

Connectors import the core (`meterflow`), never Prefect: flows and tasks look them up here and
hand API connectors their access (endpoint and key, resolved from a block) already loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connectors.csv import CsvConnector
from connectors.electricitymaps import ElectricityMapsConnector
from connectors.nem12 import Nem12Connector
from connectors.push import PushConnector
from connectors.s3 import S3Connector
from connectors.solcast import SolcastConnector
from connectors.wattwatchers import WattwatchersConnector
from connectors.weather import WeatherConnector
from meterflow.collection.collect import Connector
from meterflow.collection.sources import CallBudget, SourceAccess
from meterflow.common.http import Caller, HttpClient
from meterflow.configuration.config import Meter, Participant
from meterflow.jobs.thresholds import Thresholds

CONNECTOR_TYPES: dict[str, type] = {
    c.type: c
    for c in (
        CsvConnector,
        Nem12Connector,
        PushConnector,
        WattwatchersConnector,
        SolcastConnector,
        S3Connector,
        WeatherConnector,
        ElectricityMapsConnector,
    )
}
# Connectors fed by the participant's own storage need no access and keep no state.
FILE_CONNECTORS: dict[str, Connector] = {
    c.type: c() for c in (CsvConnector, Nem12Connector, PushConnector)
}


def connector_for(
    meter: Meter,
    participant: str,
    access: SourceAccess | None = None,
    *,
    state_dir: Path | None = None,
    s3_client: Any = None,
) -> Connector:
    """A connector ready to fetch for `meter` (API connectors get their own HTTP client)."""
    kind = meter.connector.type
    if kind in FILE_CONNECTORS:
        return FILE_CONNECTORS[kind]
    caller = Caller(participant, meter.id, kind, meter.credentials)
    if kind == "s3":
        return S3Connector(s3_client, caller)
    if access is None:
        raise ValueError(f"{caller}: no access resolved for a {kind} meter")
    key = access.api_key.get_secret_value() if access.api_key else None
    client = HttpClient(caller, secrets=[key] if key else [], headers=auth_headers(kind, key))
    if kind == "wattwatchers":
        return WattwatchersConnector(client, access.base_url)
    if kind == "solcast":
        budget = CallBudget((state_dir or Path(".")) / "solcast-budget.json")
        return SolcastConnector(client, access, budget)
    if kind == "electricitymaps":
        return ElectricityMapsConnector(client, access.base_url)
    return WeatherConnector(client, access.base_url)


def auth_headers(kind: str, key: str | None) -> dict[str, str]:
    """How a source takes its key: in the header its connector names (`auth_header`, e.g.
    Electricity Maps' `auth-token`), else as `Authorization: Bearer <key>`."""
    if not key:
        return {}
    header = getattr(CONNECTOR_TYPES[kind], "auth_header", None)
    return {header: key} if header else {"Authorization": f"Bearer {key}"}


def health_thresholds(participant: Participant) -> dict[str, Thresholds]:
    """Each meter's latency and silent thresholds: its own, or its connector's defaults."""
    return {
        meter.id: Thresholds.of(
            meter,
            CONNECTOR_TYPES[meter.connector.type].latency,
            CONNECTOR_TYPES[meter.connector.type].silent_after,
        )
        for meter in participant.meters
    }
