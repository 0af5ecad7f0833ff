"""Load the warehouse: configuration, calendar, factors and meter-hours (load), and
property-hours (aggregate), and write the participant's report."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks import open_warehouse
from blocks.storage import known_bucket, open_storage
from meterflow.collection.catalog import read_catalog
from meterflow.common.memory import release_memory
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.config import Participant
from meterflow.reporting.schedule import latest_report_due, report_link
from meterflow.warehouse import LoadCounts, loads

# A V4 signed URL lives at most 7 days; each rendering links a new one.
REPORT_LINK_DAYS = 7


@task(task_run_name="load/{participant.id}/{window}", cache_policy=NO_CACHE)
def load_window(
    data_root: str,
    warehouse: str,
    participant: Participant,
    window: HourWindow,
    aggregate: bool = False,
) -> LoadCounts:
    """Load the window's stored hours (with `aggregate`, its property-hours too, from the same
    read of the day files), and count as loaded the runs whose changes lie in it."""
    storage = open_storage(data_root, participant.id)
    catalog = read_catalog(storage)
    load = loads.load_hours if aggregate else loads.load_window
    with open_warehouse(warehouse) as wh:
        counts = load(wh, storage, participant, window, datetime.now(UTC))
        loads.record_loads(wh, {participant.id: loads.runs_within(catalog.runs, window)})
        return counts


@task(task_run_name="aggregate/{participant.id}/{window}", cache_policy=NO_CACHE)
def aggregate_window(
    data_root: str, warehouse: str, participant: Participant, window: HourWindow
) -> LoadCounts:
    storage = open_storage(data_root, participant.id)
    with open_warehouse(warehouse) as wh:
        return loads.aggregate_window(wh, storage, participant, window)


@task(task_run_name="load-changes/{label}", cache_policy=NO_CACHE)
def load_changes(
    data_root: str,
    warehouse: str,
    participants: list[Participant],
    label: str,
    buckets: list[str] | None = None,
) -> tuple[dict[str, list[HourWindow]], dict[str, str]]:
    """Load and aggregate what every merged run not yet loaded changed (this run's, and any a
    lost flow left) for the participants, together, then record those runs as loaded: each
    participant's spans in order, and why a participant's stored hours could not be read.
    `buckets`: the participants whose storage is a block (None: ask Prefect's API)."""
    pending = []
    for participant in participants:
        storage = open_storage(data_root, participant.id, known_bucket(participant.id, buckets))
        pending.append(loads.Pending(storage, participant, read_catalog(storage).runs))
    with open_warehouse(warehouse) as wh:
        spans_of, failed = loads.load_pending(wh, pending, datetime.now(UTC))
    release_memory()
    return spans_of, {pid: f"{type(exc).__name__}: {exc}" for pid, exc in failed.items()}


def report_due(data_root: str, participant_id: str, every: timedelta) -> bool:
    storage = open_storage(data_root, participant_id)
    return latest_report_due(storage, datetime.now(UTC), every)


@task(task_run_name="report/{participant.id}/{window}", cache_policy=NO_CACHE)
def report_window(
    data_root: str, warehouse: str, participant: Participant, window: HourWindow
) -> str:
    """Render the participant's latest report into its storage; a link its people can open:
    the portal's (METERFLOW_PORTAL_PUBLIC_URL), else a signed URL valid REPORT_LINK_DAYS."""
    from meterflow.reporting.report import write_latest_report  # matplotlib: only when due

    storage = open_storage(data_root, participant.id)
    with open_warehouse(warehouse) as wh:
        write_latest_report(wh, storage, window, datetime.now(UTC))
    portal = os.environ.get("METERFLOW_PORTAL_PUBLIC_URL")
    return report_link(storage, portal, timedelta(days=REPORT_LINK_DAYS))
