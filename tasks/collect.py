"""Plan, collect and merge meter windows: one task run per group of participants or per shard of
meters, never per meter-hour, and one merge per participant (the one writer of its day files
and catalog). Each task run does its work in a worker process of the flow's pool
(`tasks.pool`, `tasks.worker`) and logs what it did."""

from __future__ import annotations

from concurrent.futures import Future, as_completed
from contextvars import ContextVar

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture

from blocks.storage import known_bucket, open_storage
from meterflow.collection.plan import MeterWindow
from meterflow.collection.shards import ShardReport
from meterflow.common.errors import MeterflowError
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.config import Participant
from tasks import worker
from tasks.pool import in_worker, to_worker
from tasks.worker import Planned


@task(task_run_name="plan/{participant.id}/{window}", cache_policy=NO_CACHE)
def plan_participant(data_root: str, participant: Participant, window) -> list[MeterWindow]:
    return worker.plan(open_storage(data_root, participant.id), participant, window)


# Each participant's `Planned`, handed to the flow that submitted its group (`collect_groups`).
_handed: ContextVar[dict[str, Future[Planned]] | None] = ContextVar(
    "meterflow_handed", default=None
)


@task(task_run_name="participants/{label}/{window}", cache_policy=NO_CACHE)
def collect_participants(
    data_root: str,
    participant_ids: list[str],
    window: HourWindow,
    shard_size: int,
    label: str,
    collect_one_shard: bool = True,
    buckets: list[str] | None = None,
) -> list[Planned]:
    """Validate, plan and (when the plan fits one shard) collect and merge each participant,
    each in a worker process: an hourly dispatch pays a task run a few times, not once per
    participant. Each participant goes to the flow as soon as its worker is done with it
    (`collect_groups`). A participant that fails, fails alone. `buckets`: the participants
    whose storage is a block (None: ask Prefect's API)."""
    sent = {
        to_worker(
            worker.collect_participant,
            data_root,
            participant_id,
            window,
            shard_size,
            collect_one_shard,
            known_bucket(participant_id, buckets),
        ): participant_id
        for participant_id in participant_ids
    }
    handed = _handed.get() or {}
    done = {}
    for future in as_completed(sent):
        try:
            planned = future.result()
        except Exception as exc:  # the worker process died, or the call could not reach it
            planned = Planned(sent[future], error=exc)
        if planned.participant_id in handed:
            handed[planned.participant_id].set_result(planned)
        if planned.report is not None:
            _log(planned.participant_id, "1 shard", len(planned.report.outcomes), planned.report)
        done[planned.participant_id] = planned
    return [done[participant_id] for participant_id in participant_ids]


def collect_groups(
    data_root: str,
    groups: dict[str, list[str]],
    window: HourWindow,
    shard_size: int,
    collect_one_shard: bool,
    buckets: list[str] | None,
) -> tuple[dict[str, Future[Planned]], list[PrefectFuture]]:
    """A task run of `collect_participants` per group (named by its label), and each
    participant's `Planned`, handed over as soon as its worker is done with it: the flow loads
    it while the group's others are collected and Prefect records the task run's end (through
    its API: 0.4-0.5 s when both cores are busy). A task run that ends without handing over its
    participants hands them over failed, naming it."""
    handed = {pid: Future() for group in groups.values() for pid in group}
    token = _handed.set(handed)  # task runs see the context they were submitted in
    try:
        runs = [
            collect_participants.submit(
                data_root, group, window, shard_size, label, collect_one_shard, buckets
            )
            for label, group in groups.items()
        ]
    finally:
        _handed.reset(token)
    for run, (label, group) in zip(runs, groups.items(), strict=True):
        run.add_done_callback(lambda _, label=label, group=group: _failed(handed, label, group))
    return handed, runs


def _failed(handed: dict[str, Future[Planned]], label: str, group: list[str]) -> None:
    why = MeterflowError(f"task run participants/{label} ended before collecting it")
    for participant_id in group:
        if not handed[participant_id].done():
            handed[participant_id].set_result(Planned(participant_id, error=why))


@task(task_run_name="collect/{participant.id}/{label}", cache_policy=NO_CACHE)
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


@task(task_run_name="merge/{participant.id}", cache_policy=NO_CACHE)
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
