"""`backfill`: re-collect and reload a participant's meters over a span, chunk by chunk.

Each chunk is collected, loaded and aggregated, then recorded as done; the same backfill run
again resumes after the last recorded chunk. `force_override` (default True) fetches again and
rewrites; False rebuilds the hours from the raw archive without calling any source.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger

import flows.heartbeats  # noqa: F401  (a flow run ends when its work ends)
from blocks.storage import open_storage
from flows.collect import SHARD_DEPLOYMENT, Mode, collect_participant
from flows.naming import participant_window
from meterflow.collection.backfill import BackfillRecord
from meterflow.collection.plan import MeterWindow
from meterflow.collection.shards import DEFAULT_SHARD_SIZE, failures
from meterflow.common.errors import MeterflowError
from meterflow.common.timeutil import HourWindow, chunks
from tasks.jobs import track_jobs
from tasks.participants import validate_participant
from tasks.pool import task_runner
from tasks.warehouse import load_window


def record_for(data_root: str, participant_id: str, meter_ids, window, force_override):
    """The backfill's record, in the participant's storage."""
    storage = open_storage(data_root, participant_id)
    return BackfillRecord(storage, meter_ids, window, force_override)


@flow(flow_run_name=participant_window, task_runner=task_runner())
def backfill(
    participant_id: str,
    start: str,
    end: str,
    meter_ids: list[str] | None = None,
    force_override: bool = True,
    chunk_days: int = 7,
    data_root: str = "data",
    warehouse: str = "data/warehouse.duckdb",
    shard_size: int = DEFAULT_SHARD_SIZE,
    mode: Mode = "local",
    shard_deployment: str = SHARD_DEPLOYMENT,
) -> dict:
    """Backfill [start, end) for the participant's meters (all, or `meter_ids`)."""
    logger = get_run_logger()
    window = HourWindow.parse(start, end)
    participant = validate_participant(data_root, participant_id)
    meters = (
        [participant.meter(m).id for m in meter_ids]
        if meter_ids
        else [m.id for m in participant.meters]
    )
    record = record_for(data_root, participant_id, meter_ids, window, force_override)
    todo = record.pending(window, chunk_days)
    total = len(chunks(window, chunk_days))
    if len(todo) < total:
        logger.info("resuming: %d of %d chunks already done", total - len(todo), total)
    for chunk in todo:
        planned = [MeterWindow(m, chunk, len(chunk.hours())) for m in meters]
        started = datetime.now(UTC)
        report = collect_participant(
            data_root, participant, planned, force_override, shard_size, mode, shard_deployment
        )
        failed = failures(report.outcomes)
        if not failed:
            load_window(data_root, warehouse, participant, chunk, aggregate=True)
        # Its intervals' tasks, each a rerun (health and alerts are the dispatch's: they look
        # forward from the latest hour, a backfill looks back).
        track_jobs(
            warehouse,
            [participant.id],
            [participant],
            report.outcomes,
            started,
            chunk.end,
            f"{participant.id}/{chunk}",
            rerun=True,
            look_forward=False,
        )
        if failed:
            raise MeterflowError(f"backfill chunk {chunk} failed:\n" + "\n".join(failed))
        record.mark(chunk)
        logger.info("chunk %s done", chunk)
    return {"chunks": total, "done_now": len(todo), "done_before": total - len(todo)}
