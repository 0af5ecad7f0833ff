"""Plan and collect meter windows: one task run per shard of meters, never per meter-hour."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from blocks import access_for, s3_client_for
from blocks.storage import open_storage
from connectors import CONNECTOR_TYPES, connector_for
from meterflow import unloaded
from meterflow.collect import collect_meter
from meterflow.config import Participant
from meterflow.plan import MeterWindow, plan_meters
from meterflow.shards import MeterOutcome, ShardReport
from meterflow.timeutil import HourWindow


@task(task_run_name="plan/{participant.id}/{window}")
def plan_participant(
    data_root: str, participant: Participant, window: HourWindow
) -> list[MeterWindow]:
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
    """Collect a shard's meter windows one after another; a failing meter fails alone.

    Only a summary per meter goes back to the caller, so memory is bounded by the shard.
    """
    logger = get_run_logger()
    storage = open_storage(data_root, participant.id)
    report = ShardReport()
    for meter_window in planned:
        meter = participant.meter(meter_window.meter_id)
        try:
            connector = connector_for(
                meter,
                participant.id,
                access_for(meter),
                state_dir=Path(data_root) / ".platform",
                s3_client=s3_client_for(meter) if meter.connector.type == "s3" else None,
            )
            result = collect_meter(
                storage,
                participant,
                meter,
                connector,
                meter_window.window,
                force_override=force_override,
            )
        except Exception as exc:  # one meter's broken source or config never stops its shard
            outcome = MeterOutcome.failed(participant.id, meter.id, exc)
            logger.error("%s/%s failed: %s", participant.id, meter.id, outcome.why)
            report.outcomes.append(outcome)
            continue
        report.add(result)
        if result.deferred:
            logger.warning("%s: deferred: %s", meter.id, result.deferred)
        for reason in result.rejected:
            logger.warning("%s: quarantined: %s", meter.id, reason)
    if report.changed:
        unloaded.mark(storage, report.changed)
    logger.info(
        "%s/%s: %d meters, %d hours changed, %d missing",
        participant.id,
        label,
        len(planned),
        sum(o.hours_new for o in report.outcomes),
        sum(o.hours_missing for o in report.outcomes),
    )
    return report
