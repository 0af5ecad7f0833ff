"""Plan and collect meter windows: one task run per meter window, never per meter-hour."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from blocks import access_for, s3_client_for
from connectors import CONNECTOR_TYPES, connector_for
from meterflow.collect import CollectResult, collect_meter
from meterflow.config import Participant
from meterflow.participants import open_storage
from meterflow.plan import MeterWindow, plan_meters
from meterflow.timeutil import HourWindow


@task(task_run_name="plan/{participant.id}/{window}")
def plan_participant(
    data_root: str, participant: Participant, window: HourWindow
) -> list[MeterWindow]:
    storage = open_storage(data_root, participant.id)
    return plan_meters(
        storage, participant, window, lambda meter: CONNECTOR_TYPES[meter.connector.type]
    )


@task(task_run_name="collect/{participant.id}/{planned.meter_id}/{planned.window.start:%Y-%m-%d}")
def collect_meter_window(
    data_root: str,
    participant: Participant,
    planned: MeterWindow,
    force_override: bool | None = None,
) -> CollectResult:
    meter = participant.meter(planned.meter_id)
    connector = connector_for(
        meter,
        participant.id,
        access_for(meter),
        state_dir=Path(data_root) / ".platform",
        s3_client=s3_client_for(meter) if meter.connector.type == "s3" else None,
    )
    result = collect_meter(
        open_storage(data_root, participant.id),
        participant,
        meter,
        connector,
        planned.window,
        force_override=force_override,
    )
    logger = get_run_logger()
    if result.deferred:
        logger.warning("deferred: %s", result.deferred)
    for reason in result.rejected:
        logger.warning("quarantined: %s", reason)
    logger.info(
        "%s/%s: %d new payloads, %d hours changed, %d missing",
        participant.id,
        meter.id,
        result.payloads_new,
        result.hours_new,
        result.hours_missing,
    )
    return result
