"""Load the warehouse: configuration, calendar, factors and meter-hours (load), and
property-hours (aggregate)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from prefect import task

from blocks import open_warehouse
from meterflow.aggregate import aggregate_changes
from meterflow.config import Participant
from meterflow.hourly_store import read_hours
from meterflow.participants import open_storage
from meterflow.report import write_report
from meterflow.timeutil import HOUR, HourWindow
from meterflow.warehouse import LoadCounts
from meterflow.warehouse.loads import (
    load_calendar,
    load_configuration,
    load_emission_factors,
    load_meter_hours,
    load_property_hours,
)


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
    data_root: str, warehouse: str, participant: Participant, window: HourWindow
) -> LoadCounts:
    """Upsert configuration (with history), emission factors, the local calendar and the
    meter-hours of the window."""
    rows = _window_rows(data_root, participant, window)
    with open_warehouse(warehouse) as wh:
        wh.prepare()
        return (
            load_configuration(wh, participant, datetime.now(UTC))
            + load_emission_factors(wh)
            + load_calendar(wh, participant, window.hours())
            + load_meter_hours(wh, participant, rows)
        )


@task(task_run_name="aggregate/{participant.id}/{window}")
def aggregate_window(
    data_root: str, warehouse: str, participant: Participant, window: HourWindow
) -> LoadCounts:
    """Recompute and upsert the property-hours of the window for every data type."""
    storage = open_storage(data_root, participant.id)
    rows = aggregate_changes(storage, participant, _window_rows(data_root, participant, window))
    with open_warehouse(warehouse) as wh:
        wh.prepare()
        return load_property_hours(wh, participant.id, rows)


@task(task_run_name="report/{participant.id}/{window}")
def report_window(
    data_root: str, warehouse: str, participant: Participant, window: HourWindow
) -> Path:
    """The participant's benchmarking report for the local dates the window touches."""
    first, after = window.start.date(), (window.end - HOUR).date() + timedelta(days=1)
    out = Path(data_root) / "reports" / f"{participant.id}-latest.html"
    with open_warehouse(warehouse) as wh:
        return write_report(wh, participant.id, first, after, out)
