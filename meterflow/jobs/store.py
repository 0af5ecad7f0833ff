"""Meter jobs and their tasks in the warehouse, one shape for ETL and MRV.

`meter_job` holds each job as configured (an ETL job a meter has implicitly included) and its
latest task; `meter_task` one row per job interval: the stage it reached, its status, how often
it had to be done again and the errors it met. A task is never duplicated: a new execution of
its interval updates it. Its retry count goes up once per failed execution (the next run retries
it) and once per rerun of an interval already done.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache

import pandas as pd

from meterflow.common.timeutil import warehouse_time
from meterflow.configuration.config import EtlJob, Meter, MrvJob, Participant
from meterflow.warehouse.backend import Warehouse, identifier_list
from meterflow.warehouse.schema import TABLES, TYPES

STAGES = {
    "etl": ("collection", "transformation", "ingestion"),
    "mrv": ("extraction", "verification", "submission"),
}
MAX_ERRORS = 20  # a task keeps its latest errors; its retry count keeps counting
TASK_TIME = "%Y-%m-%dT%H:%MZ"  # the UTC start of its interval, in a task's id
# An execution of a task interval, as `record_tasks` takes it (one row per task).
EXECUTION_COLUMNS = (
    "task_id",
    "participant_id",
    "job_id",
    "meter_id",
    "type",
    "interval_start_utc",
    "interval_end_utc",
    "stage",
    "status",
    "error",  # {"type", "message"} or None
    "started_utc",
    "ended_utc",
    "hours_produced",
    "coverage",
    "record_id",
    "rerun",  # an explicit rerun (not the dispatch's own incremental collection)
    "found_new",  # it fetched, refused or made something (else it only looked again)
)


def job_id(meter: Meter, job: EtlJob | MrvJob) -> str:
    return f"{meter.id}/{job.id}"


def task_id(job: str, interval_start: pd.Timestamp) -> str:
    """A task's id: its job and the UTC start of its interval (`job@2026-04-01T13:00Z`)."""
    return f"{job}@{pd.Timestamp(interval_start):{TASK_TIME}}"


def task_ids(jobs: pd.Series, interval_starts: pd.Series) -> pd.Series:
    """task_id of many tasks at once (8,000 a week's backfill of 1,000 meters)."""
    return jobs + "@" + interval_starts.dt.strftime(TASK_TIME)


def job_rows(participant: Participant, meters: list[Meter] | None = None) -> pd.DataFrame:
    """A `meter_job` row per job of the meters (all of the participant's by default); the
    implicit ETL job's start and the latest tasks are filled in by `record_tasks`."""
    rows = []
    for meter in participant.meters if meters is None else meters:
        for job in (*meter.etl_jobs, *meter.mrv_jobs):
            rows.append(
                {
                    "participant_id": participant.id,
                    "job_id": job_id(meter, job),
                    "meter_id": meter.id,
                    "device_id": meter.device_id,
                    "type": job.type,
                    "start_date": job.start,
                    "end_date": job.end,
                    "frequency": job.interval,
                    "implicit": job.type == "etl" and job.implicit,
                    "settings": _settings(job),
                    "last_task_id": None,
                    "zone": participant.property(meter.property_id).timezone,
                }
            )
    return pd.DataFrame(rows, columns=[*TABLES["meter_job"].column_names, "zone"])


@cache
def _settings(job: EtlJob | MrvJob) -> str:
    """A job's own settings as JSON (the same for every meter with an implicit ETL job)."""
    own = job.model_dump(mode="json", exclude={"type", "start", "end", "interval", "implicit"})
    return json.dumps(own, sort_keys=True)


def record_tasks(
    wh: Warehouse, participants: list[Participant], executions: pd.DataFrame, meters=None
) -> pd.DataFrame:
    """Merge the participants' executions (EXECUTION_COLUMNS) into their tasks and point each
    of their jobs (of `meters` only, if given) at its latest task; the task rows written. One
    read and one upsert per table for every participant at once."""
    if not participants:
        return pd.DataFrame(columns=TABLES["meter_task"].column_names)
    jobs = pd.concat([job_rows(p, meters) for p in participants], ignore_index=True)
    ids = [p.id for p in participants]
    if executions.empty:
        _sync_jobs(wh, ids, jobs, pd.DataFrame(columns=TABLES["meter_task"].column_names))
        return executions
    of_them = identifier_list(ids, "participant")
    earlier = wh.query(
        f"SELECT participant_id, task_id, status, retry_count, errors, hours_produced "
        f"FROM {wh.table('meter_task')} WHERE participant_id IN ({of_them}) "
        "AND interval_start_utc >= ? AND interval_start_utc <= ?",
        [
            executions["interval_start_utc"].min().to_pydatetime(),
            executions["interval_start_utc"].max().to_pydatetime(),
        ],
    )
    tasks = executions.merge(
        earlier, on=["participant_id", "task_id"], how="left", suffixes=("", "_before")
    )
    known = tasks["retry_count"].notna()
    # A dispatch that looked again and found nothing new leaves a finished task as it was.
    same = (
        known
        & ~tasks["rerun"].astype(bool)
        & ~tasks["found_new"].astype(bool)
        & tasks["error"].isna()
        & tasks["status_before"].isin(["done", "quarantined"])
        & tasks["hours_produced"].eq(tasks["hours_produced_before"])
    )
    tasks, known = tasks[~same], known[~same]
    # A failed execution (or an MRV step that met an error) is retried by the next run.
    failed_now = tasks["error"].notna() & tasks["status"].ne("quarantined")
    redone = tasks["rerun"].astype(bool) & known & tasks["status_before"].ne("failed")
    before = tasks["retry_count"].fillna(0).astype(int)
    tasks["retry_count"] = before + failed_now.astype(int) + redone.astype(int)
    tasks["errors"] = [
        _errors(old, new, at)
        for old, new, at in zip(tasks["errors"], tasks["error"], tasks["ended_utc"], strict=True)
    ]
    written = tasks[TABLES["meter_task"].column_names]
    wh.upsert("meter_task", written)
    _sync_jobs(wh, ids, jobs, written)
    return written


def sync_jobs(wh: Warehouse, participant: Participant) -> None:
    """Every job of the participant as configured, keeping each one's latest task."""
    record_tasks(wh, [participant], pd.DataFrame(columns=EXECUTION_COLUMNS))


def last_error(errors: str | None) -> str | None:
    """`type: message` of the latest error in a task's errors (JSON; None or NaN: none)."""
    if not isinstance(errors, str) or not errors:
        return None
    error = json.loads(errors)[-1]
    return f"{error['type']}: {error['message']}"


def _errors(old, new: dict | None, at) -> str | None:
    """The task's errors as JSON, oldest first, with this execution's appended."""
    errors = json.loads(old) if isinstance(old, str) and old else []
    if new:
        errors.append({"at": pd.Timestamp(at).strftime("%Y-%m-%dT%H:%M:%SZ"), **new})
    return json.dumps(errors[-MAX_ERRORS:]) if errors else None


def _sync_jobs(wh: Warehouse, ids: list[str], jobs: pd.DataFrame, written: pd.DataFrame):
    """The jobs as configured, each with its latest task (this run's if it ran one) and, for an
    implicit ETL job, the local date of its first interval that produced hours."""
    key = ["participant_id", "job_id"]
    stored = wh.query(
        f"SELECT participant_id, job_id, start_date AS stored_start, last_task_id AS stored_task "
        f"FROM {wh.table('meter_job')} "
        f"WHERE participant_id IN ({identifier_list(ids, 'participant')})"
    )
    latest = (
        written.sort_values(["ended_utc", "interval_start_utc"])
        .groupby(key, as_index=False)["task_id"]
        .last()
    )
    produced = written[written["type"].eq("etl") & written["hours_produced"].fillna(0).gt(0)]
    first = produced.groupby(key, as_index=False)["interval_start_utc"].min()
    jobs = jobs.merge(stored, on=key, how="left").merge(latest, on=key, how="left")
    jobs = jobs.merge(first, on=key, how="left")
    jobs["last_task_id"] = jobs["task_id"].fillna(jobs["stored_task"])
    implicit = jobs["implicit"] & jobs["interval_start_utc"].notna()
    for zone, group in jobs[implicit].groupby("zone"):
        local = group["interval_start_utc"].dt.tz_localize("UTC").dt.tz_convert(zone)
        jobs.loc[group.index, "first_day"] = local.dt.tz_localize(None).dt.normalize()
    if "first_day" in jobs:
        earliest = pd.concat(
            [pd.to_datetime(jobs["stored_start"]), pd.to_datetime(jobs["first_day"])], axis=1
        ).min(axis=1)
    else:
        earliest = pd.to_datetime(jobs["stored_start"])
    jobs["start_date"] = jobs["start_date"].where(~jobs["implicit"], earliest.dt.date)
    wh.upsert("meter_job", jobs[TABLES["meter_job"].column_names])


def job_overview(
    wh: Warehouse, participant_id: str | None = None, type: str | None = None
) -> pd.DataFrame:
    """Every job with its latest task (stage, status, retries) and, for MRV jobs, how many of
    its records are in each status."""
    t = wh.table
    waiting = ", ".join(f"'{status}'" for status in ("failed", "needs_review"))
    return wh.query(
        f"""SELECT j.participant_id, j.job_id, j.meter_id, j.type, j.frequency, j.start_date,
               j.end_date, j.implicit, j.last_task_id, k.stage AS last_task_stage,
               k.status AS last_task_status, k.retry_count AS last_task_retries,
               sum(CASE WHEN r.status = 'submitted' THEN 1 ELSE 0 END) AS submitted,
               sum(CASE WHEN r.status = 'rejected' THEN 1 ELSE 0 END) AS rejected,
               sum(CASE WHEN r.status IN ({waiting}) THEN 1 ELSE 0 END) AS needs_action,
               sum(CASE WHEN r.status NOT IN ('submitted', 'rejected', {waiting})
                   THEN 1 ELSE 0 END) AS other
        FROM {t("meter_job")} j
        LEFT JOIN {t("meter_task")} k ON k.participant_id = j.participant_id
             AND k.task_id = j.last_task_id
        LEFT JOIN {t("mrv_record")} r ON r.participant_id = j.participant_id
             AND r.job_id = j.job_id
             AND r.revision = (SELECT max(q.revision) FROM {t("mrv_record")} q
                               WHERE q.record_id = r.record_id)
        WHERE (CAST(? AS {TYPES[wh.dialect]["text"]}) IS NULL OR j.participant_id = ?)
          AND (CAST(? AS {TYPES[wh.dialect]["text"]}) IS NULL OR j.type = ?)
        GROUP BY j.participant_id, j.job_id, j.meter_id, j.type, j.frequency, j.start_date,
                 j.end_date, j.implicit, j.last_task_id, k.stage, k.status, k.retry_count
        ORDER BY j.participant_id, j.job_id""",
        [participant_id, participant_id, type, type],
    )


def task_history(
    wh: Warehouse,
    meter_id: str,
    start: datetime,
    end: datetime,
    participant_id: str | None = None,
) -> pd.DataFrame:
    """The tasks of a meter's jobs whose interval meets [start, end), oldest first."""
    return wh.query(
        f"SELECT participant_id, task_id, job_id, type, interval_start_utc, interval_end_utc, "
        "stage, status, retry_count, errors, started_utc, ended_utc, hours_produced, coverage, "
        f"record_id FROM {wh.table('meter_task')} WHERE meter_id = ? "
        f"AND (CAST(? AS {TYPES[wh.dialect]['text']}) IS NULL OR participant_id = ?) "
        "AND interval_start_utc < ? AND interval_end_utc > ? "
        "ORDER BY participant_id, interval_start_utc, type, job_id",
        [meter_id, participant_id, participant_id, warehouse_time(end), warehouse_time(start)],
    )
