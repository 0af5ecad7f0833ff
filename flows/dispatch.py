"""`dispatch` (hourly): validate every participant, collect what is due, load what changed, then
run MRV for participants with MRV jobs (it extracts only intervals whose data is new or changed).

A broken participant or meter fails alone: the others are collected and loaded, the run's table
artifact says who failed and why, and the run ends Failed naming them, so that operators see it.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.runtime import flow_run

from blocks.storage import participant_ids
from flows.collect import SHARD_DEPLOYMENT, Mode, shard_runner, start_shards
from flows.mrv import mrv
from meterflow.collection.shards import DEFAULT_SHARD_SIZE, MeterOutcome, failures
from meterflow.common.errors import MeterflowError
from meterflow.common.timeutil import HourWindow, floor_hour
from meterflow.reporting.schedule import REPORT_EVERY_HOURS
from tasks.collect import plan_participant
from tasks.participants import validate_participant
from tasks.warehouse import load_changes, report_due, report_window

# Without an explicit window, a dispatch covers the complete hours of the last day.
LOOKBACK_HOURS = 24


class DispatchFailed(MeterflowError):
    """Some participants or meters failed; everything else was collected and loaded. Carries
    the summary rows, so that whoever started the run can show every meter, not only these."""

    def __init__(self, message: str, rows: list[dict] | None = None):
        super().__init__(message)
        self.rows = rows or []


def resolve_window(start: str | None, end: str | None, lookback_hours: int) -> HourWindow:
    """The explicit window, or the `lookback_hours` complete hours before now."""
    if start and end:
        return HourWindow.parse(start, end)
    last = floor_hour(datetime.now(UTC))
    return HourWindow(last - timedelta(hours=lookback_hours), last)


def _run_name() -> str:
    p = flow_run.parameters
    window = resolve_window(p.get("start"), p.get("end"), p.get("lookback_hours", LOOKBACK_HOURS))
    return f"dispatch/{window}"


@flow(flow_run_name=_run_name, task_runner=shard_runner())
def dispatch(
    start: str | None = None,
    end: str | None = None,
    data_root: str = "data",
    warehouse: str = "data/warehouse.duckdb",
    participants: list[str] | None = None,
    lookback_hours: int = LOOKBACK_HOURS,
    shard_size: int = DEFAULT_SHARD_SIZE,
    mode: Mode = "local",
    shard_deployment: str = SHARD_DEPLOYMENT,
    report_every_hours: float | None = REPORT_EVERY_HOURS,
) -> list[dict]:
    """Run every participant's collection, load and aggregation for the window.

    Without `start`/`end` the window is the last `lookback_hours` whole hours (UTC): hours
    already complete are skipped, so an hourly schedule also fills gaps after downtime.
    `warehouse` is a DuckDB file path or a warehouse block, e.g. `meterflow-postgresql/prod`.
    Collection runs in shards of `shard_size` meters: concurrently in this process
    (`mode="local"`), or as runs of `shard_deployment` (`mode="deployments"`) on its work pool.
    A participant's latest report is rendered after a load when it is `report_every_hours` old
    or missing (0: after every load, None: never); `meterflow report` renders one on demand.
    """
    logger = get_run_logger()
    window = resolve_window(start, end, lookback_hours)
    ids = participants or participant_ids(data_root)
    logger.info("dispatch %s over %d participants: %s", window, len(ids), ", ".join(ids))
    # Each participant's outcomes, reported in participant order whenever they were learnt.
    outcomes_of: dict[str, list[MeterOutcome]] = {pid: [] for pid in ids}
    # Each participant's shards go to the pool as soon as they are planned: its workers collect
    # the next participants while this flow merges and loads the first. One participant's lone
    # shard runs inline (not worth starting worker processes for).
    started = []
    for participant_id in ids:
        try:
            participant = validate_participant(data_root, participant_id)
        except MeterflowError as exc:
            logger.error("participant %s skipped: %s", participant_id, exc)
            outcomes_of[participant_id].append(MeterOutcome.failed(participant_id, "*", exc))
            continue
        planned = plan_participant(data_root, participant, window)
        inline = None if len(ids) == 1 else False
        started.append(
            start_shards(
                data_root, participant, planned, None, shard_size, mode, shard_deployment, inline
            )
        )
    for shards_of in started:
        participant, participant_id = shards_of.participant, shards_of.participant.id
        collection = shards_of.finish()
        outcomes_of[participant_id].extend(collection.outcomes)
        try:
            # What this run changed, and what an earlier run stored but never loaded.
            loaded = load_changes(data_root, warehouse, participant)
            if (
                loaded
                and report_every_hours is not None
                and report_due(data_root, participant_id, timedelta(hours=report_every_hours))
            ):
                path = report_window(data_root, warehouse, participant, window)
                create_link_artifact(
                    key=f"report-{participant_id}",
                    link=path.resolve().as_uri(),
                    link_text=f"Benchmarking report: {participant.name}",
                    description=f"Latest report for {participant_id}, {window}",
                )
        except Exception as exc:  # e.g. the warehouse file is locked by another writer
            why = f"warehouse load or report failed: {type(exc).__name__}: {exc}"
            logger.error("participant %s: %s", participant_id, why)
            outcomes_of[participant_id].append(
                MeterOutcome(participant_id, "*", status="failed", why=why)
            )
            continue
        if any(meter.jobs for meter in participant.meters):
            try:
                # Nothing new: only what waits is submitted or reconciled.
                changed = loaded[0].start if loaded else window.end
                mrv(
                    participant_id,
                    window.end.isoformat(),
                    data_root,
                    warehouse,
                    changed.isoformat(),
                )
            except Exception as exc:  # the MRV run's own artifact says which records and why
                outcomes_of[participant_id].append(MeterOutcome.failed(participant_id, "mrv", exc))
    outcomes = [o for found in outcomes_of.values() for o in found]
    rows = [asdict(o) for o in outcomes]
    create_table_artifact(
        key="dispatch-summary",
        table=rows,
        description=f"Dispatch {window}: hours new, cached, missing per meter; failures and why.",
    )
    failed = failures(outcomes)
    if failed:
        raise DispatchFailed(f"{len(failed)} failed:\n" + "\n".join(failed), rows)
    return rows
