"""Load the warehouse: configuration, calendar, factors and meter-hours (load), and
property-hours (aggregate), and write the participant's report."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import task

from blocks import open_warehouse
from blocks.storage import open_storage
from meterflow import unloaded
from meterflow.backfill import chunks
from meterflow.config import Participant
from meterflow.report import write_latest_report
from meterflow.timeutil import HourWindow, merge_windows
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


@task(task_run_name="load-changes/{participant.id}")
def load_changes(data_root: str, warehouse: str, participant: Participant) -> list[HourWindow]:
    """Load and aggregate every span collection marked as changed, a week at a time, then drop
    the marks read before loading began; the spans loaded, in order."""
    storage = open_storage(data_root, participant.id)
    pending = unloaded.marks(storage)
    spans = [c for span in merge_windows(list(pending.values())) for c in chunks(span, 7)]
    with open_warehouse(warehouse) as wh:
        for span in spans:
            loads.load_window(wh, storage, participant, span, datetime.now(UTC))
            loads.aggregate_window(wh, storage, participant, span)
    unloaded.unmark(storage, list(pending))
    return spans


@task(task_run_name="marks/{participant.id}/{window}")
def marks_within(data_root: str, participant: Participant, window: HourWindow) -> list[str]:
    """The change marks a load of `window` covers (read before that load)."""
    storage = open_storage(data_root, participant.id)
    return [
        key
        for key, span in unloaded.marks(storage).items()
        if window.start <= span.start and span.end <= window.end
    ]


@task(task_run_name="unmark/{participant.id}")
def unmark(data_root: str, participant: Participant, keys: list[str]) -> None:
    unloaded.unmark(open_storage(data_root, participant.id), keys)


@task(task_run_name="report/{participant.id}/{window}")
def report_window(
    data_root: str, warehouse: str, participant: Participant, window: HourWindow
) -> Path:
    with open_warehouse(warehouse) as wh:
        return write_latest_report(wh, participant.id, window, Path(data_root) / "reports")
