"""Load the warehouse: configuration, calendar, factors and meter-hours (load), and
property-hours (aggregate), and write the participant's report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from prefect import task

from blocks import open_warehouse
from blocks.storage import open_storage
from meterflow.collection.backfill import chunks
from meterflow.collection.catalog import read_catalog
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.config import Participant
from meterflow.reporting.report import write_latest_report
from meterflow.reporting.schedule import latest_report_due
from meterflow.warehouse import LoadCounts, loads


@task(task_run_name="load/{participant.id}/{window}")
def load_window(
    data_root: str, warehouse: str, participant: Participant, window: HourWindow
) -> LoadCounts:
    """Load the window's stored hours, and count as loaded the runs whose changes lie in it."""
    storage = open_storage(data_root, participant.id)
    catalog = read_catalog(storage)
    with open_warehouse(warehouse) as wh:
        counts = loads.load_window(wh, storage, participant, window, datetime.now(UTC))
        loads.record_loads(wh, participant.id, loads.runs_within(catalog.runs, window))
        return counts


@task(task_run_name="aggregate/{participant.id}/{window}")
def aggregate_window(
    data_root: str, warehouse: str, participant: Participant, window: HourWindow
) -> LoadCounts:
    storage = open_storage(data_root, participant.id)
    with open_warehouse(warehouse) as wh:
        return loads.aggregate_window(wh, storage, participant, window)


@task(task_run_name="load-changes/{participant.id}")
def load_changes(data_root: str, warehouse: str, participant: Participant) -> list[HourWindow]:
    """Load and aggregate what every merged run not yet loaded changed, a week at a time (this
    run's, and any a lost flow left), then record those runs as loaded; the spans, in order."""
    storage = open_storage(data_root, participant.id)
    catalog = read_catalog(storage)
    with open_warehouse(warehouse) as wh:
        pending = loads.unloaded_runs(wh, participant.id, catalog.runs)
        spans = [c for span in loads.changed_spans(pending) for c in chunks(span, 7)]
        for span in spans:
            loads.load_hours(wh, storage, participant, span, datetime.now(UTC))
        loads.record_loads(wh, participant.id, pending)
    return spans


def report_due(data_root: str, participant_id: str, every: timedelta) -> bool:
    return latest_report_due(Path(data_root) / "reports", participant_id, datetime.now(UTC), every)


@task(task_run_name="report/{participant.id}/{window}")
def report_window(
    data_root: str, warehouse: str, participant: Participant, window: HourWindow
) -> Path:
    with open_warehouse(warehouse) as wh:
        return write_latest_report(wh, participant.id, window, Path(data_root) / "reports")
