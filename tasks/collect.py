"""Plan, collect and merge meter windows: one task run per group of participants or per shard of
meters, never per meter-hour, and one merge per participant (the one writer of its day files
and catalog). Each task run does its work in a worker process of the flow's pool
(`tasks.pool`, `tasks.worker`) and logs what it did."""

from __future__ import annotations

from prefect import get_run_logger, task

from blocks.storage import open_storage
from meterflow.collection.plan import MeterWindow
from meterflow.collection.shards import ShardReport
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.config import Participant
from tasks import worker
from tasks.pool import in_worker
from tasks.worker import Planned


@task(task_run_name="plan/{participant.id}/{window}")
def plan_participant(data_root: str, participant: Participant, window) -> list[MeterWindow]:
    return worker.plan(open_storage(data_root, participant.id), participant, window)


@task(task_run_name="participants/{label}/{window}")
def collect_participants(
    data_root: str,
    participant_ids: list[str],
    window: HourWindow,
    shard_size: int,
    label: str,
    collect_one_shard: bool = True,
    buckets: list[str] | None = None,
) -> list[Planned]:
    """Validate, plan and (when the plan fits one shard) collect and merge each participant
    in turn, in a worker process: an hourly dispatch pays a task run a few times, not once per
    participant. A participant that fails, fails alone. `buckets`: the participants whose
    storage is a block (None: ask Prefect's API)."""
    done = in_worker(
        worker.collect_participants,
        data_root,
        participant_ids,
        window,
        shard_size,
        collect_one_shard,
        buckets,
    )
    for planned in done:
        if planned.report is not None:
            _log(planned.participant_id, "1 shard", len(planned.report.outcomes), planned.report)
    return done


@task(task_run_name="collect/{participant.id}/{label}")
def collect_shard(
    data_root: str,
    participant: Participant,
    planned: list[MeterWindow],
    label: str,
    force_override: bool | None = None,
    in_bucket: bool | None = None,
) -> ShardReport:
    """Collect a shard's meter windows; a failing meter fails alone. Only a summary per meter
    and the key of the shard's run object come back."""
    report = in_worker(
        worker.collect_shard, data_root, participant, planned, label, force_override, in_bucket
    )
    _log(participant.id, label, len(planned), report)
    return report


@task(task_run_name="merge/{participant.id}")
def merge_runs(
    data_root: str, participant: Participant, runs: list[str], in_bucket: bool | None = None
) -> int:
    """Upsert the shards' hours into the day files and record their runs in the catalog (and
    any run a lost flow left unmerged); the number of meter-hours that changed."""
    return in_worker(worker.merge_runs, data_root, participant, runs, in_bucket)


def _log(participant_id: str, label: str, meters: int, report: ShardReport) -> None:
    logger = get_run_logger()
    for outcome in report.outcomes:
        if outcome.status == "failed":
            logger.error("%s/%s failed: %s", participant_id, outcome.meter, outcome.why)
        elif outcome.status in ("deferred", "quarantined"):
            logger.warning("%s: %s: %s", outcome.meter, outcome.status, outcome.why)
    logger.info(
        "%s/%s: %d meters, %d hours changed, %d missing",
        participant_id,
        label,
        meters,
        sum(o.hours_new for o in report.outcomes),
        sum(o.hours_missing for o in report.outcomes),
    )
