"""`dispatch` (hourly): validate every participant, collect what is due, load what changed, then
run MRV for participants with MRV jobs (it extracts only intervals whose data is new or changed).

A broken participant or meter fails alone: the others are collected and loaded, the run's table
artifact says who failed and why, and the run ends Failed naming them, so that operators see it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.futures import PrefectFuture, wait
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

import flows.heartbeats  # noqa: F401  (a flow run ends when its work ends)
from blocks.storage import in_buckets, participant_ids, storage_blocks
from flows.collect import SHARD_DEPLOYMENT, Mode, start_shards
from meterflow.collection.shards import DEFAULT_SHARD_SIZE, MeterOutcome, failures
from meterflow.common.errors import MeterflowError
from meterflow.common.timeutil import HourWindow, floor_hour
from meterflow.configuration.config import Participant
from meterflow.jobs.track import LOAD_FAILED
from meterflow.reporting.schedule import REPORT_EVERY_HOURS
from meterflow.warehouse.loads import load_at_least
from tasks.collect import collect_groups, collect_participants
from tasks.jobs import health_artifact, track_jobs
from tasks.pool import here, pool_workers, release_workers, task_runner, worker_pool
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


def load_participants(
    data_root: str,
    warehouse: str,
    participants: list[Participant],
    window: HourWindow,
    report_every_hours: float | None,
    buckets: list[str] | None = None,
) -> dict[str, list[MeterOutcome]]:
    """Load what the participants' runs changed (and what an earlier run stored but never
    loaded), together; then each one's report when due, and its MRV jobs. A failure is an
    outcome of the participants it touched."""
    if not participants:
        return {}
    logger = get_run_logger()
    outcomes: dict[str, list[MeterOutcome]] = {p.id: [] for p in participants}

    def fail(participant_id: str, why: str, error_type: str = "") -> None:
        logger.error("participant %s: %s", participant_id, why)
        outcomes[participant_id].append(
            MeterOutcome(participant_id, "*", status="failed", why=why, error_type=error_type)
        )

    label = participants[0].id + (f"..{participants[-1].id}" if len(participants) > 1 else "")
    try:
        spans_of, unreadable = load_changes(
            data_root, warehouse, quote(participants), label, buckets
        )
    except Exception as exc:  # e.g. the warehouse file is locked by another writer
        spans_of, unreadable = {}, {p.id: f"{type(exc).__name__}: {exc}" for p in participants}
    for participant in participants:
        participant_id = participant.id
        if participant_id in unreadable:
            fail(
                participant_id, f"warehouse load failed: {unreadable[participant_id]}", LOAD_FAILED
            )
            continue
        loaded = spans_of[participant_id]
        try:
            if (
                loaded
                and report_every_hours is not None
                and report_due(data_root, participant_id, timedelta(hours=report_every_hours))
            ):
                link = report_window(data_root, warehouse, quote(participant), window)
                create_link_artifact(
                    key=f"report-{participant_id}",
                    link=link,
                    link_text=f"Benchmarking report: {participant.name}",
                    description=f"Latest report for {participant_id}, {window}",
                )
        except Exception as exc:
            fail(participant_id, f"report failed: {type(exc).__name__}: {exc}")
            continue
        if not any(meter.mrv_jobs for meter in participant.meters):
            continue
        from flows.mrv import mrv  # the MRV modules load only for participants with MRV jobs

        try:
            # Nothing new: only what waits is submitted or reconciled.
            changed = loaded[0].start if loaded else window.end
            mrv(participant_id, window.end.isoformat(), data_root, warehouse, changed.isoformat())
        except Exception as exc:  # the MRV run's own artifact says which records and why
            outcomes[participant_id].append(MeterOutcome.failed(participant_id, "mrv", exc))
    return outcomes


def participant_groups(ids: list[str]) -> dict[str, list[str]]:
    """The participants in groups for their task runs, one per worker process, in order, each
    named by its first and last participant. A group's task run sends its participants to the
    pool one by one and hands each to the flow as soon as it is collected (`collect_groups`),
    so a group's size decides neither when a participant is loaded nor which worker collects
    it; and every task run costs CPU in this process and in Prefect's API, on the cores the
    workers use (in groups that shrank from a quarter of the participants down to single
    ones, 6 task runs for 10 participants, Prefect's API used 0.58-0.65 s of CPU in a
    1,000-meter backfill; in two groups, 0.42-0.49 s)."""
    size = max(1, -(-len(ids) // pool_workers()))  # rounded up
    groups = [ids[first : first + size] for first in range(0, len(ids), size)]
    return {(g[0] if len(g) == 1 else f"{g[0]}..{g[-1]}"): g for g in groups}


def completed(futures: dict[str, list[Future] | list[PrefectFuture]]) -> Iterator[list[str]]:
    """The participants in batches as all their futures complete: each batch is every one
    completed since the last, and at least `load_at_least` of those left, so the load that
    follows them is done for many at once."""
    done: queue.SimpleQueue[str] = queue.SimpleQueue()
    left = {key: len(found) for key, found in futures.items()}
    lock = threading.Lock()

    def one_done(key: str) -> None:
        with lock:
            left[key] -= 1
            if left[key] == 0:
                done.put(key)

    for key, found in futures.items():
        if not found:
            done.put(key)
        for future in found:
            future.add_done_callback(lambda _, key=key: one_done(key))
    remaining = len(futures)
    while remaining:
        batch = [done.get()]
        while not done.empty() or len(batch) < load_at_least(remaining, pool_workers()):
            batch.append(done.get())
        remaining -= len(batch)
        yield batch


def _collect_and_load(
    data_root: str,
    ids: list[str],
    buckets: list[str],
    window: HourWindow,
    shard_size: int,
    mode: Mode,
    shard_deployment: str,
    load: Callable[[list[Participant]], None],
    outcomes_of: dict[str, list[MeterOutcome]],
) -> list[Participant]:
    """Collect every participant and `load` them as they complete, noting their outcomes;
    the participants whose configuration is valid."""
    logger = get_run_logger()
    one_shard = mode == "local"
    runs = []
    if len(ids) == 1:
        with here():
            lone = collect_participants(
                data_root, ids, window, shard_size, ids[0], one_shard, buckets
            )
        batches = iter([lone])
    else:
        handed, runs = collect_groups(
            data_root, participant_groups(ids), window, shard_size, one_shard, buckets
        )
        batches = (
            [handed[participant_id].result() for participant_id in batch]
            for batch in completed({participant_id: [f] for participant_id, f in handed.items()})
        )

    left = len(ids)

    def done_with(participants: int) -> None:
        """Count the participants done with; after the last, the workers go (before its load)."""
        nonlocal left
        left -= participants
        if not left:
            release_workers()

    started_shards, valid = [], []
    for batch in batches:
        collected, sharded = [], len(started_shards)
        for planned in batch:
            participant_id = planned.participant_id
            if planned.error is not None:
                logger.error("participant %s skipped: %s", participant_id, planned.error)
                outcomes_of[participant_id].append(
                    MeterOutcome.failed(participant_id, "*", planned.error)
                )
            elif planned.report is None:
                inline = None if len(ids) == 1 else False
                valid.append(planned.participant)
                started_shards.append(
                    start_shards(
                        data_root,
                        planned.participant,
                        planned.planned,
                        None,
                        shard_size,
                        mode,
                        shard_deployment,
                        inline,
                        participant_id in buckets,
                    )
                )
            else:
                outcomes_of[participant_id].extend(planned.report.outcomes)
                collected.append(planned.participant)
                valid.append(planned.participant)
        done_with(len(batch) - (len(started_shards) - sharded))
        load(collected)
    # Participants collected in shards: merged and loaded together as their shards complete.
    started_of = {shards_of.participant.id: shards_of for shards_of in started_shards}
    for batch in completed({pid: shards_of.futures for pid, shards_of in started_of.items()}):
        for participant_id in batch:
            outcomes_of[participant_id].extend(started_of[participant_id].finish().outcomes)
        done_with(len(batch))
        load([started_of[participant_id].participant for participant_id in batch])
    wait(runs)  # the groups' task runs end as their last participants are loaded
    return valid


@flow(flow_run_name=_run_name, task_runner=task_runner())
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
    notify: str | None = None,
) -> list[dict]:
    """Run every participant's collection, load and aggregation for the window.

    Without `start`/`end` the window is the last `lookback_hours` whole hours (UTC): hours
    already complete are skipped, so an hourly schedule also fills gaps after downtime.
    `warehouse` is a DuckDB file path or a warehouse block, e.g. `meterflow-postgresql/prod`.
    Collection runs in shards of `shard_size` meters: concurrently in this run's worker
    processes (`mode="local"`), or as runs of `shard_deployment` (`mode="deployments"`) on its
    work pool.
    A participant's latest report is rendered after a load when it is `report_every_hours` old
    or missing (0: after every load, None: never); `meterflow report` renders one on demand.
    Then the meters' ETL tasks are recorded, their health evaluated as of the window's end, and
    alerts sent through each participant's notification block, or `notify` (a block slug such
    as `slack-webhook/ops`) for those that name none.
    """
    logger = get_run_logger()
    started = datetime.now(UTC)
    window = resolve_window(start, end, lookback_hours)
    blocks = storage_blocks()  # asked once: the others' storage is opened without the API
    ids = participants or participant_ids(data_root, blocks)
    buckets = in_buckets(ids, blocks)
    logger.info("dispatch %s over %d participants: %s", window, len(ids), ", ".join(ids))
    # Each participant's outcomes, reported in participant order whenever they were learnt.
    outcomes_of: dict[str, list[MeterOutcome]] = {pid: [] for pid in ids}

    def load(participants: list[Participant]) -> None:
        loaded = load_participants(
            data_root, warehouse, participants, window, report_every_hours, buckets
        )
        for participant_id, found in loaded.items():
            outcomes_of[participant_id].extend(found)

    # Each participant is validated, planned and, when its plan fits one shard, collected and
    # merged in a worker process, under its group's task run; the participants collected
    # meanwhile are loaded together while the workers do the next. A larger plan comes back to
    # be run in shards. A lone participant runs here (not worth starting worker
    # processes for). The workers stop once every participant is collected and merged.
    with worker_pool():
        valid = _collect_and_load(
            data_root, ids, buckets, window, shard_size, mode, shard_deployment, load, outcomes_of
        )
    outcomes = [o for found in outcomes_of.values() for o in found]
    state_of = {}
    try:
        tracked = track_jobs(
            warehouse,
            ids,
            quote(valid),  # not walked by Prefect for futures: thousands of meters
            quote(outcomes),
            started,
            window.end,
            str(window),
            notify=notify,
        )
        state_of = {(h["participant_id"], h["meter_id"]): h["state"] for h in tracked.health}
        health_artifact(tracked, window)
    except Exception as exc:  # the data is loaded; the tasks and health wait for the next run
        outcomes.append(MeterOutcome.failed("*", "jobs and health", exc))
    rows = [asdict(o) | {"health": state_of.get((o.participant, o.meter), "")} for o in outcomes]
    create_table_artifact(
        key="dispatch-summary",
        table=rows,
        description=f"Dispatch {window}: hours new, cached, missing per meter; failures and why.",
    )
    failed = failures(outcomes)
    if failed:
        raise DispatchFailed(f"{len(failed)} failed:\n" + "\n".join(failed), rows)
    return rows
