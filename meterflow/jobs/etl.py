"""ETL task executions from what a dispatch did to each meter: the intervals of its ETL jobs
that the meter's window met, the stage each reached, its status and error, and the hours the
interval holds in the warehouse with their coverage. Vectorised over every meter at once (an
hourly dispatch of 10,000 meters writes their tasks in one upsert)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from meterflow.collection.shards import MeterOutcome
from meterflow.common.timeutil import warehouse_time
from meterflow.configuration.config import Participant
from meterflow.jobs.periods import interval_ends, interval_starts, job_span
from meterflow.jobs.store import EXECUTION_COLUMNS, job_id, task_id
from meterflow.warehouse.backend import Warehouse, identifier_list

HOUR = pd.Timedelta(hours=1)


def etl_executions(
    participants: list[Participant],
    outcomes: list[MeterOutcome],
    load_errors: dict[str, str],
    started: datetime,
    ended: datetime,
    rerun: bool = False,
) -> pd.DataFrame:
    """One execution per ETL task interval the meters' windows met (EXECUTION_COLUMNS, without
    the hours produced: `with_hours` adds them). A meter that failed stopped at collection (or
    transformation, when its data could not be read); the others reached ingestion, unless its
    participant's load failed (`load_errors`)."""
    jobs = pd.DataFrame(
        [
            {
                "participant_id": p.id,
                "meter_id": m.id,
                "job_id": job_id(m, job),
                "interval": job.interval,
                "zone": zone,
                "span_start": span[0],
                "span_end": span[1],
            }
            for p in participants
            for m in p.meters
            for zone in [p.property(m.property_id).timezone]
            for job in m.etl_jobs
            for span in [_naive_span(job, zone)]
        ],
        columns=["participant_id", "meter_id", "job_id", "interval", "zone", "span_start",
                 "span_end"],
    )  # fmt: skip
    known = set(zip(jobs["participant_id"], jobs["meter_id"], strict=True))
    mine = [o for o in outcomes if (o.participant, o.meter) in known and o.start]
    if not mine:
        return pd.DataFrame(columns=EXECUTION_COLUMNS)
    runs = pd.DataFrame([vars(o) for o in mine])
    start = _naive(runs["start"])
    counts = ((_naive(runs["end"]) - start) // HOUR).astype(int).to_numpy()
    first = np.repeat(np.arange(len(runs)), counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    hours = pd.DataFrame(
        {
            "run": first,
            "participant_id": runs["participant"].to_numpy()[first],
            "meter_id": runs["meter"].to_numpy()[first],
            "hour": start.to_numpy()[first] + offset * HOUR.to_timedelta64(),
        }
    )
    for side in ("span_start", "span_end"):
        jobs[side] = pd.to_datetime(jobs[side])
    hours = hours.merge(jobs, on=["participant_id", "meter_id"])
    inside = (hours["span_start"].isna() | (hours["hour"] >= hours["span_start"])) & (
        hours["span_end"].isna() | (hours["hour"] < hours["span_end"])
    )
    hours = hours[inside]
    hours["interval_start_utc"] = _by_zone(hours, "hour", interval_starts)
    tasks = hours.drop_duplicates(["participant_id", "job_id", "interval_start_utc"])
    tasks = tasks.reset_index(drop=True)
    tasks["interval_end_utc"] = _by_zone(tasks, "interval_start_utc", interval_ends)
    done = runs.loc[tasks["run"]].reset_index(drop=True)
    stage, status, error = _results(done, load_errors)
    return pd.DataFrame(
        {
            "task_id": [
                task_id(j, s)
                for j, s in zip(tasks["job_id"], tasks["interval_start_utc"], strict=True)
            ],
            "participant_id": tasks["participant_id"],
            "job_id": tasks["job_id"],
            "meter_id": tasks["meter_id"],
            "type": "etl",
            "interval_start_utc": tasks["interval_start_utc"],
            "interval_end_utc": tasks["interval_end_utc"],
            "stage": stage,
            "status": status,
            "error": error,
            "started_utc": _utc(started),
            "ended_utc": _utc(ended),
            "hours_produced": None,
            "coverage": None,
            "record_id": None,
            "rerun": rerun,
            "found_new": (done["hours_new"] + done["files_new"]).gt(0) | done["status"].ne("ok"),
        },
        columns=EXECUTION_COLUMNS,
    )


def _results(runs: pd.DataFrame, load_errors: dict[str, str]) -> tuple[list, list, list]:
    """Stage reached, status and error of each meter's run."""
    stages, statuses, errors = [], [], []
    columns = ("status", "why", "error_type", "participant")
    for status, why, kind, participant in zip(*(runs[c] for c in columns), strict=True):
        load_error = load_errors.get(participant)
        if status == "failed":
            stage = "transformation" if kind == "SourceDataError" else "collection"
            stages.append(stage)
            statuses.append("failed")
            errors.append({"stage": stage, "type": kind or "Error", "message": why})
        elif status == "deferred":  # the source's rate budget: not an error, collected later
            stages.append("collection")
            statuses.append("deferred")
            errors.append(None)
        elif load_error is not None:
            stages.append("ingestion")
            statuses.append("failed")
            errors.append({"stage": "ingestion", "type": "LoadError", "message": load_error})
        else:
            stages.append("ingestion")
            statuses.append("quarantined" if status == "quarantined" else "done")
            quarantined = {"stage": "transformation", "type": "Quarantined", "message": why}
            errors.append(quarantined if status == "quarantined" else None)
    return stages, statuses, errors


def with_hours(wh: Warehouse, executions: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """The executions with the hours each interval holds in the warehouse (a reading, not a
    missing hour) and their coverage: the share of the interval's hours up to `as_of` covered."""
    if executions.empty:
        return executions
    first, last = executions["interval_start_utc"].min(), executions["interval_end_utc"].max()
    ids = identifier_list(sorted(set(executions["participant_id"])), "participant")
    facts = wh.query(
        f"SELECT participant_id, meter_id, hour_utc, coverage "
        f"FROM {wh.table('fact_meter_hourly')} WHERE participant_id IN ({ids}) "
        "AND hour_utc >= ? AND hour_utc < ? AND value IS NOT NULL",
        [first.to_pydatetime(), last.to_pydatetime()],
    )
    key = ["participant_id", "task_id"]
    spans = executions[[*key, "meter_id", "interval_start_utc", "interval_end_utc"]]
    found = facts.merge(spans, on=["participant_id", "meter_id"])
    found = found[
        (found["hour_utc"] >= found["interval_start_utc"])
        & (found["hour_utc"] < found["interval_end_utc"])
    ]
    per_task = found.groupby(key).agg(hours=("hour_utc", "size"), covered=("coverage", "sum"))
    counted = executions.join(per_task, on=key)
    until = executions["interval_end_utc"].clip(upper=_utc(as_of))
    expected = np.ceil(
        ((until - executions["interval_start_utc"].dt.ceil("h")) / HOUR).clip(lower=0)
    )
    return executions.assign(
        hours_produced=counted["hours"].fillna(0).astype(int),
        coverage=(counted["covered"].fillna(0.0) / expected.where(expected > 0)).round(4),
    )


def _by_zone(frame: pd.DataFrame, column: str, convert) -> pd.Series:
    """convert(frame[column], interval, zone) for each group of interval and zone."""
    out = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
    for (interval, zone), group in frame.groupby(["interval", "zone"]):
        out.loc[group.index] = convert(group[column], interval, zone).to_numpy()
    return out


def _naive_span(job, zone: str) -> tuple:
    return tuple(None if t is None else _utc(t) for t in job_span(job.start, job.end, zone))


def _naive(iso: pd.Series) -> pd.Series:
    return pd.to_datetime(iso, utc=True).dt.tz_localize(None).astype("datetime64[ns]")


def _utc(moment: datetime) -> pd.Timestamp:
    return pd.Timestamp(warehouse_time(moment))
