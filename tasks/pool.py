"""The flow's worker processes: where its collection task runs do their work.

A task run stays in the flow process (a thread: its state, logs and result are Prefect's, at
about 10 ms each), and sends the CPU-bound domain call behind it (validate, plan, fetch,
standardise, merge) to a pool of worker processes, one per core, which import Meterflow's domain
code and the connectors but not Prefect. With Prefect's ProcessPoolTaskRunner the whole task
run went to the worker: each worker imported Prefect (1.6 s and 65 MiB more on this machine's
2 cores) and each task run there cost about 0.13 s of client and settings. Processes, not
threads: standardisation is CPU-bound, and in threads the flow ran 16-18 % slower than the bare
code on 2 cores (the GIL).

The pool's workers start with the first call and stop when the flow's collection is done, so
their memory is not held while the flow loads the last participants and records tasks and
health.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from prefect.settings import get_current_settings
from prefect.task_runners import ThreadPoolTaskRunner

from tasks import worker

T = TypeVar("T")

_pool: ContextVar[ProcessPoolExecutor | None] = ContextVar("meterflow_worker_pool", default=None)


def pool_workers() -> int:
    """How many worker processes a pool starts: one per core, or
    PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS."""
    configured = get_current_settings().tasks.runner.process_pool_max_workers
    return configured or os.cpu_count() or 1


def task_runner() -> ThreadPoolTaskRunner:
    """The collection flows' task runner: two threads per worker process, so that while a
    worker does one shard's task run's work the next has begun and its work waits in the
    pool's queue. With one thread per worker, each worker sat idle while Prefect finished one
    task run and began the next. A task run may thus be Running while its work waits in the
    pool's queue (a dispatch's group task runs, one per worker, send their participants' work
    there all at once)."""
    return ThreadPoolTaskRunner(max_workers=2 * pool_workers())


@contextmanager
def worker_pool() -> Iterator[None]:
    """Task runs inside send their work to worker processes (started as they are needed); the
    workers see this process's Prefect settings (its API, for blocks)."""
    env = get_current_settings().to_environment_variables(exclude_unset=True)
    pool = ProcessPoolExecutor(
        pool_workers(),
        mp_context=worker.WORKER_CONTEXT,
        initializer=worker.start_worker,
        initargs=(env,),
    )
    token = _pool.set(pool)
    try:
        yield
    finally:
        _pool.reset(token)
        pool.shutdown(wait=True, cancel_futures=True)


def release_workers() -> None:
    """Let the open pool's worker processes go once the flow has no more work for them (every
    participant collected and merged): the memory they hold (a large participant's merge leaves
    a worker at 250-300 MiB) is freed while the flow loads the last participants, not after.
    Work sent later is done in this process."""
    pool = _pool.get()
    if pool is not None:
        pool.shutdown(wait=False)
        _pool.set(None)


@contextmanager
def here() -> Iterator[None]:
    """Task runs inside do their work in this process (a lone participant, a single shard: not
    worth a worker's start)."""
    token = _pool.set(None)
    try:
        yield
    finally:
        _pool.reset(token)


def in_worker(work: Callable[..., T], *args) -> T:
    """`work(*args)` in a worker process of the open pool, or here when none is open."""
    return to_worker(work, *args).result()


def to_worker(work: Callable[..., T], *args) -> Future[T]:
    """`work(*args)` sent to a worker process of the open pool; done here, at once, when none
    is open."""
    pool = _pool.get()
    if pool is not None:
        return pool.submit(work, *args)
    done: Future[T] = Future()
    try:
        done.set_result(work(*args))
    except Exception as exc:
        done.set_exception(exc)
    return done
