"""Prefect's own fixed cost, for reading b/a: the dispatch flow's shape with no work in it."""

from __future__ import annotations

from prefect import flow, task

from flows.collect import shard_runner
from flows.dispatch import participant_groups


@task
def nothing(label: str) -> str:
    return label


@flow(task_runner=shard_runner())
def empty_dispatch(participant_ids: list[str]) -> None:
    """What `dispatch` pays before any meter: a flow run (its start, its heartbeat thread's
    stop), the same pool of worker processes (spawned, importing Prefect), one task run per
    participant group in them, and the pool's shutdown."""
    futures = [nothing.submit(label) for label in participant_groups(participant_ids)]
    for future in futures:
        future.result()
