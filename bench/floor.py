"""Prefect's own fixed cost, for reading b/a: the dispatch flow's shape with no work in it."""

from __future__ import annotations

from prefect import flow, task

from flows.dispatch import participant_groups
from tasks.pool import in_worker, task_runner, worker_pool


@task
def nothing(label: str) -> int:
    return in_worker(len, label)


@flow(task_runner=task_runner())
def empty_dispatch(participant_ids: list[str]) -> None:
    """What `dispatch` pays before any meter: a flow run (its start, its heartbeat thread's
    stop), one task run per participant group sending a call to the worker processes (which
    start as the dispatch's do, importing `tasks.worker`, as the bare run's do too), and the
    pool's shutdown."""
    with worker_pool():
        futures = [nothing.submit(label) for label in participant_groups(participant_ids)]
        for future in futures:
            future.result()
