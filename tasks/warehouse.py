"""Load the warehouse: configuration, calendar, factors and meter-hours (load), and
property-hours (aggregate), and write the participant's report."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import task

from blocks import open_warehouse
from blocks.storage import open_storage
from meterflow.config import Participant
from meterflow.report import write_latest_report
from meterflow.timeutil import HourWindow
from meterflow.warehouse import LoadCounts, loads


@task(task_run_name="load/{participant.id}/{window}")
def load_window(
    data_root: str, warehouse: str, participant: Participant, window: HourWindow
) -> LoadCounts:
    storage = open_storage(data_root, participant.id)
    with open_warehouse(warehouse) as wh:
        return loads.load_window(wh, storage, participant, window, datetime.now(UTC))


@task(task_run_name="aggregate/{participant.id}/{window}")
def aggregate_window(
    data_root: str, warehouse: str, participant: Participant, window: HourWindow
) -> LoadCounts:
    storage = open_storage(data_root, participant.id)
    with open_warehouse(warehouse) as wh:
        return loads.aggregate_window(wh, storage, participant, window)


@task(task_run_name="report/{participant.id}/{window}")
def report_window(
    data_root: str, warehouse: str, participant: Participant, window: HourWindow
) -> Path:
    with open_warehouse(warehouse) as wh:
        return write_latest_report(wh, participant.id, window, Path(data_root) / "reports")
