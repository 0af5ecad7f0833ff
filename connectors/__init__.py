"""One module per source type; each turns a source's payloads into source readings.

Connectors import the core (`meterflow`), never Prefect: flows and tasks look them up here.
"""

from __future__ import annotations

from connectors.csv import CsvConnector
from connectors.nem12 import Nem12Connector
from connectors.push import PushConnector
from meterflow.collect import Connector
from meterflow.config import Meter

CONNECTORS: dict[str, Connector] = {
    connector.type: connector for connector in (CsvConnector(), Nem12Connector(), PushConnector())
}


def connector_for(meter: Meter) -> Connector:
    return CONNECTORS[meter.connector.type]
