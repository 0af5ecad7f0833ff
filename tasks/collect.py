"""Plan, collect and merge meter windows: one task run per shard of meters, never per meter-hour,
and one merge per participant (the one writer of its day files and catalog)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import get_run_logger, task

from blocks import access_for, s3_client_for
from blocks.storage import open_storage
from connectors import CONNECTOR_TYPES, connector_for
from meterflow.collection import collect
from meterflow.collection.plan import MeterWindow, plan_meters
from meterflow.collection.shards import ShardReport
from meterflow.configuration.config import Meter, Participant


@task(task_run_name="plan/{participant.id}/{window}")
def plan_participant(data_root: str, participant: Participant, window) -> list[MeterWindow]:
    storage = open_storage(data_root, participant.id)
    return plan_meters(
        storage, participant, window, lambda meter: CONNECTOR_TYPES[meter.connector.type]
    )


@task(task_run_name="collect/{participant.id}/{label}")
def collect_shard(
    data_root: str,
    participant: Participant,
    planned: list[MeterWindow],
    label: str,
    force_override: bool | None = None,
) -> ShardReport:
    """Collect a shard's meter windows; a failing meter fails alone. Only a summary per meter
    and the key of the shard's run object go back to the caller."""
    logger = get_run_logger()
    storage = open_storage(data_root, participant.id)

    def connector_of(meter: Meter):
        return connector_for(
            meter,
            participant.id,
            access_for(meter),
            state_dir=Path(data_root) / ".platform",
            s3_client=s3_client_for(meter) if meter.connector.type == "s3" else None,
        )

    run = collect.collect_shard(
        storage, participant, planned, connector_of, force_override=force_override, label=label
    )
    report = ShardReport.of(run)
    for result, outcome in zip(run.results, report.outcomes, strict=True):
        if outcome.status == "failed":
            logger.error("%s/%s failed: %s", participant.id, result.meter, outcome.why)
        if result.deferred:
            logger.warning("%s: deferred: %s", result.meter, result.deferred)
        for reason in result.rejected:
            logger.warning("%s: quarantined: %s", result.meter, reason)
    logger.info(
        "%s/%s: %d meters, %d hours changed, %d missing",
        participant.id,
        label,
        len(planned),
        sum(o.hours_new for o in report.outcomes),
        sum(o.hours_missing for o in report.outcomes),
    )
    return report


@task(task_run_name="merge/{participant.id}")
def merge_runs(data_root: str, participant: Participant, runs: list[str]) -> int:
    """Upsert the shards' hours into the day files and record their runs in the catalog (and
    any run a lost flow left unmerged); the number of meter-hours that changed."""
    storage = open_storage(data_root, participant.id)
    now = datetime.now(UTC)
    changed = collect.merge(storage, participant, [*runs, *collect.unmerged(storage, now)], now)
    return len(changed)
