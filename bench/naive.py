"""The design Meterflow avoids, for comparison only: one Prefect task run per meter-hour."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, task
from prefect.futures import wait

from blocks import open_warehouse
from connectors import connector_for
from meterflow.collection.collect import collect_meter
from meterflow.common.storage import LocalStorage
from meterflow.common.timeutil import HOUR, HourWindow
from meterflow.configuration.participants import list_participants, read_configuration
from meterflow.warehouse.loads import aggregate_window, load_window


@task
def collect_meter_hour(data_root: str, participant_id: str, meter_id: str, hour) -> int:
    storage = LocalStorage(data_root, participant_id)
    participant = read_configuration(storage)
    meter = participant.meter(meter_id)
    window = HourWindow(hour, hour + HOUR)
    return collect_meter(
        storage, participant, meter, connector_for(meter, participant_id), window
    ).hours_new


@flow
def naive_dispatch(data_root: str, warehouse: str, window: HourWindow) -> None:
    for pid in list_participants(data_root):
        storage = LocalStorage(data_root, pid)
        participant = read_configuration(storage)
        futures = [
            collect_meter_hour.submit(data_root, pid, meter.id, hour.to_pydatetime())
            for meter in participant.meters
            for hour in window.hours()
        ]
        wait(futures)
        with open_warehouse(warehouse) as wh:
            load_window(wh, storage, participant, window, datetime.now(UTC))
            aggregate_window(wh, storage, participant, window)
