"""`collect` and `collect-shard`: fetch, archive and standardise meter windows, shard by shard.

Planned meter windows are grouped into shards of `shard_size` meters. With `mode="local"` the
shards run concurrently as task runs doing their work in the flow's worker processes
(`tasks.pool`); with `mode="deployments"` each shard is a run of the `shard_deployment`
(`collect-shard/local`, `collect-shard/gcp` on Cloud Run, ...), and this run waits for them all.
A failed shard is reported by name; the others still count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from prefect import flow, get_run_logger
from prefect.deployments import arun_deployment
from prefect.futures import PrefectFuture, wait

import flows.heartbeats  # noqa: F401  (a flow run ends when its work ends)
from flows.naming import participant_window
from meterflow.collection.plan import MeterWindow
from meterflow.collection.shards import (
    DEFAULT_SHARD_SIZE,
    MeterOutcome,
    ShardReport,
    failures,
    shard,
    shard_label,
    shard_windows,
    windows_of,
)
from meterflow.common.errors import MeterflowError
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.config import Participant
from tasks.collect import collect_shard as collect_shard_task
from tasks.collect import merge_runs, plan_participant
from tasks.participants import validate_participant
from tasks.pool import here, task_runner, worker_pool

SHARD_DEPLOYMENT = "collect-shard/local"
Mode = Literal["local", "deployments"]


def collect_participant(
    data_root: str,
    participant: Participant,
    planned: list[MeterWindow],
    force_override: bool | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    mode: Mode = "local",
    shard_deployment: str = SHARD_DEPLOYMENT,
) -> ShardReport:
    """Collect the planned meter windows in shards, locally (in worker processes, which stop
    when it is done) or as runs of `shard_deployment`, then merge the shards' runs into the
    participant's day files and catalog."""
    with worker_pool():
        started = start_shards(
            data_root, participant, planned, force_override, shard_size, mode, shard_deployment
        )
        return started.finish()


@dataclass
class StartedShards:
    """A participant's shards, started: `finish` waits for them and merges their runs. A
    dispatch starts each participant's shards once it is planned, so the pool's workers collect
    the next participants while the flow merges and loads the first."""

    data_root: str
    participant: Participant
    labels: list[str]
    futures: list[PrefectFuture]
    later: Callable[[], ShardReport] | None = None  # shards not submitted to the pool
    in_bucket: bool | None = None  # its storage is a block (None: ask Prefect's API)

    def finish(self) -> ShardReport:
        """Wait for the shards and merge their runs: in a worker process when they ran in the
        pool, here when they ran here or elsewhere."""
        if self.later is not None:
            with here():
                report = self.later()
                merge_runs(self.data_root, self.participant, report.runs, self.in_bucket)
            return report
        wait(self.futures)
        states = [future.state for future in self.futures]
        report = _gather(self.participant.id, self.labels, states)
        merge_runs(self.data_root, self.participant, report.runs, self.in_bucket)
        return report


def start_shards(
    data_root: str,
    participant: Participant,
    planned: list[MeterWindow],
    force_override: bool | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    mode: Mode = "local",
    shard_deployment: str = SHARD_DEPLOYMENT,
    inline: bool | None = None,
    in_bucket: bool | None = None,
) -> StartedShards:
    """Submit the participant's shards to the flow's worker processes (`mode="local"`), or
    prepare their deployment runs. `inline` runs them in this process when `finish` is called;
    by default a lone shard runs inline (not worth starting worker processes for)."""
    shards = shard(planned, shard_size)
    labels = [shard_label(i, len(shards), s) for i, s in enumerate(shards)]
    started = StartedShards(data_root, participant, labels, [], in_bucket=in_bucket)
    if mode == "deployments":
        started.later = lambda: asyncio.run(
            _run_shard_deployments(
                shard_deployment, data_root, participant, shards, labels, force_override
            )
        )
    elif inline if inline is not None else len(shards) == 1:
        started.later = lambda: _run_inline(
            data_root, participant, shards, labels, force_override, in_bucket
        )
    else:
        started.futures = [
            collect_shard_task.submit(data_root, participant, s, label, force_override, in_bucket)
            for s, label in zip(shards, labels, strict=True)
        ]
    return started


def _run_inline(data_root, participant, shards, labels, force_override, in_bucket) -> ShardReport:
    states = [
        collect_shard_task(
            data_root, participant, s, label, force_override, in_bucket, return_state=True
        )
        for s, label in zip(shards, labels, strict=True)
    ]
    return _gather(participant.id, labels, states)


def _gather(participant_id: str, labels: list[str], states) -> ShardReport:
    """The shards' reports as one; a shard that failed is an outcome naming it."""
    report = ShardReport()
    for label, state in zip(labels, states, strict=True):
        result = state.result(raise_on_failure=False)
        if isinstance(result, BaseException):
            report.outcomes.append(MeterOutcome.failed(participant_id, label, result))
        else:
            report.merge(result)
    return report


async def _run_shard_deployments(
    shard_deployment: str,
    data_root: str,
    participant: Participant,
    shards: list[list[MeterWindow]],
    labels: list[str],
    force_override: bool | None,
) -> ShardReport:
    runs = await asyncio.gather(
        *(
            arun_deployment(
                shard_deployment,
                parameters={
                    "participant_id": participant.id,
                    "windows": shard_windows(s),
                    "label": label,
                    "data_root": data_root,
                    "force_override": force_override,
                },
                flow_run_name=f"collect-shard/{participant.id}/{label}",
                timeout=None,
                poll_interval=1,
            )
            for s, label in zip(shards, labels, strict=True)
        )
    )
    report = ShardReport()
    for label, run in zip(labels, runs, strict=True):
        if run.state is not None and run.state.is_completed():
            report.merge(await run.state.aresult())
        else:
            state = run.state.name if run.state else "unknown"
            why = MeterflowError(f"shard run {run.name} ended {state}: {run.state.message or ''}")
            report.outcomes.append(MeterOutcome.failed(participant.id, label, why))
    return report


@flow(flow_run_name=participant_window, task_runner=task_runner())
def collect(
    participant_id: str,
    start: str,
    end: str,
    data_root: str = "data",
    meter_ids: list[str] | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    mode: Mode = "local",
    shard_deployment: str = SHARD_DEPLOYMENT,
) -> dict:
    """Collect one participant's meters for [start, end) (ISO times, UTC if no offset)."""
    window = HourWindow.parse(start, end)
    participant = validate_participant(data_root, participant_id)
    planned = plan_participant(data_root, participant, window)
    if meter_ids:
        planned = [p for p in planned if p.meter_id in meter_ids]
    report = collect_participant(
        data_root, participant, planned, None, shard_size, mode, shard_deployment
    )
    failed = failures(report.outcomes)
    if failed:
        raise MeterflowError("meters failed:\n" + "\n".join(failed))
    return {"changed": str(report.changed) if report.changed else None}


@flow(
    name="collect-shard",
    flow_run_name="collect-shard/{participant_id}/{label}",
    persist_result=True,
)
def collect_shard(
    participant_id: str,
    windows: dict[str, list[str]],
    label: str = "shard",
    data_root: str = "data",
    force_override: bool | None = None,
) -> ShardReport:
    """Collect one shard: `windows` maps each meter id to its [start, end) (ISO, UTC).

    The dispatcher runs this deployment once per shard in `mode="deployments"`; its result (a
    summary per meter) is persisted so that the dispatcher can load what changed.
    """
    participant = validate_participant(data_root, participant_id)
    report = collect_shard_task(data_root, participant, windows_of(windows), label, force_override)
    get_run_logger().info("%s: %d meters collected", label, len(report.outcomes))
    return report
