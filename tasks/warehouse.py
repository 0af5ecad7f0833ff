"""Load the warehouse: configuration and meter-hours (load), property-hours (aggregate)."""

from __future__ import annotations

from prefect import task

from meterflow import warehouse
from meterflow.aggregate import aggregate_changes
from meterflow.config import Participant
from meterflow.hourly_store import read_hours
from meterflow.participants import open_storage
from meterflow.timeutil import HourWindow


def _window_rows(data_root: str, participant: Participant, window: HourWindow) -> dict:
    """Each meter's stored hourly rows inside the window."""
    storage = open_storage(data_root, participant.id)
    rows = {}
    for meter in participant.meters:
        hours = read_hours(storage, meter, window.days())
        inside = (hours["hour_utc"] >= window.start) & (hours["hour_utc"] < window.end)
        rows[meter.id] = hours[inside]
    return rows


@task(task_run_name="load/{participant.id}/{window}")
def load_window(
    data_root: str, warehouse_path: str, participant: Participant, window: HourWindow
) -> warehouse.LoadCounts:
    """Upsert the configuration dimensions and the meter-hours of the window."""
    rows = _window_rows(data_root, participant, window)
    with warehouse.connect(warehouse_path) as con:
        return warehouse.load_configuration(con, participant) + warehouse.load_meter_hours(
            con, participant, rows
        )


@task(task_run_name="aggregate/{participant.id}/{window}")
def aggregate_window(
    data_root: str, warehouse_path: str, participant: Participant, window: HourWindow
) -> warehouse.LoadCounts:
    """Recompute and upsert the property-hours of the window for every data type."""
    storage = open_storage(data_root, participant.id)
    rows = aggregate_changes(storage, participant, _window_rows(data_root, participant, window))
    with warehouse.connect(warehouse_path) as con:
        return warehouse.load_property_hours(con, participant.id, rows)
