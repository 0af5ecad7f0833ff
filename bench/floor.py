"""Prefect's own fixed cost, for reading b/a: the dispatch flow's shape with no work in it."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.dispatch import participant_groups
from tasks.pool import task_runner, to_worker, worker_pool


@task(cache_policy=NO_CACHE)  # as the dispatch's tasks
def nothing(participant_ids: list[str]) -> list[int]:
    return [future.result() for future in [to_worker(len, pid) for pid in participant_ids]]


@flow(task_runner=task_runner())
def empty_dispatch(participant_ids: list[str]) -> None:
    """What `dispatch` pays before any meter: a flow run (its start, its heartbeat thread's
    stop), one task run per participant group sending a call per participant to the worker
    processes (which start as the dispatch's do, importing `tasks.worker`, as the bare run's do
    too), and the pool's shutdown."""
    with worker_pool():
        futures = [nothing.submit(group) for group in participant_groups(participant_ids).values()]
        for future in futures:
            future.result()
