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
from meterflow.jobs.store import EXECUTION_COLUMNS, job_id, task_ids
from meterflow.warehouse.backend import Warehouse, identifier_list

HOUR = pd.Timedelta(hours=1)
HOURS_READ = 250_000  # stored meter-hours read from the warehouse at a time


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
    for side in ("span_start", "span_end"):
        jobs[side] = pd.to_datetime(jobs[side])
    pairs = (  # one row per meter window and ETL job of its meter
        runs[["participant", "meter"]]
        .assign(run=range(len(runs)), first=_naive(runs["start"]), last=_naive(runs["end"]))
        .merge(jobs, left_on=["participant", "meter"], right_on=["participant_id", "meter_id"])
    )
    # The intervals a window meets are the same for every meter with that window, job span,
    # interval and zone (in a dispatch, nearly all of them): found once per such group, from
    # its hours, then given to each of its meters, so the work grows with the tasks, not with
    # meters x hours.
    keys = ["first", "last", "interval", "zone", "span_start", "span_end"]
    parts = []
    for (first, last, interval, zone, span_start, span_end), group in pairs.groupby(
        keys, dropna=False, sort=False
    ):
        hours = pd.Series(pd.date_range(first, periods=(last - first) // HOUR, freq="h"))
        if not pd.isna(span_start):
            hours = hours[hours >= span_start]
        if not pd.isna(span_end):
            hours = hours[hours < span_end]
        starts = interval_starts(hours, interval, zone).drop_duplicates().to_numpy()
        met = group.loc[group.index.repeat(len(starts))]
        parts.append(met.assign(interval_start_utc=np.tile(starts, len(group))))
    tasks = pd.concat(parts).sort_values(["run", "interval_start_utc"], kind="stable")
    tasks = tasks.drop_duplicates(["participant_id", "job_id", "interval_start_utc"])
    tasks = tasks.reset_index(drop=True)
    tasks["interval_end_utc"] = _by_zone(tasks, "interval_start_utc", interval_ends)
    done = runs.loc[tasks["run"]].reset_index(drop=True)
    stage, status, error = _results(done, load_errors)
    return pd.DataFrame(
        {
            "task_id": task_ids(tasks["job_id"], tasks["interval_start_utc"]),
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
    # Lists, not the columns: iterating a column of pandas' (Arrow) strings is 7 times slower.
    for status, why, kind, participant in zip(*(runs[c].tolist() for c in columns), strict=True):
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
    missing hour) and their coverage: the share of the interval's hours up to `as_of` covered.
    The stored hours are read for a few participants at a time (about HOURS_READ of them), so a
    month's backfill of a large fleet is not read whole into the flow's memory."""
    if executions.empty:
        return executions
    spans = executions["interval_end_utc"] - executions["interval_start_utc"]
    size = (spans / HOUR).groupby(executions["participant_id"]).sum()
    batch = (size.cumsum() // HOURS_READ).to_numpy()
    parts = [
        _hours_in(wh, executions[executions["participant_id"].isin(group.index)])
        for _, group in size.groupby(batch)
    ]
    counted = executions.join(pd.concat(parts), on=["participant_id", "task_id"])
    until = executions["interval_end_utc"].clip(upper=_utc(as_of))
    expected = np.ceil(
        ((until - executions["interval_start_utc"].dt.ceil("h")) / HOUR).clip(lower=0)
    )
    return executions.assign(
        hours_produced=counted["hours"].fillna(0).astype(int),
        coverage=(counted["covered"].fillna(0.0) / expected.where(expected > 0)).round(4),
    )


def _hours_in(wh: Warehouse, executions: pd.DataFrame) -> pd.DataFrame:
    """The stored hours (`hours`) and their summed coverage (`covered`) of each task."""
    first, last = executions["interval_start_utc"].min(), executions["interval_end_utc"].max()
    ids = identifier_list(sorted(set(executions["participant_id"])), "participant")
    facts = wh.query(
        f"SELECT participant_id, meter_id, hour_utc, coverage "
        f"FROM {wh.table('fact_meter_hourly')} WHERE participant_id IN ({ids}) "
        "AND hour_utc >= ? AND hour_utc < ? AND value IS NOT NULL",
        [first.to_pydatetime(), last.to_pydatetime()],
    )
    key = ["participant_id", "task_id"]
    meter = ["participant_id", "meter_id"]
    spans = executions[[*key, "meter_id", "job_id", "interval_start_utc", "interval_end_utc"]]
    spans = spans.astype({"interval_start_utc": "datetime64[ns]"}).sort_values("interval_start_utc")
    # Each hour once per job of its meter (one, mostly), then in the last interval of that job
    # starting before it, if it has not ended: a job's intervals do not overlap. (Not one row
    # per hour and task of its meter: that is hours x intervals.)
    facts = facts.astype({"hour_utc": "datetime64[ns]"})
    facts = facts.merge(spans[[*meter, "job_id"]].drop_duplicates(), on=meter)
    found = pd.merge_asof(
        facts.sort_values("hour_utc", kind="stable"),
        spans,
        left_on="hour_utc",
        right_on="interval_start_utc",
        by=[*meter, "job_id"],
        direction="backward",
    )
    found = found[found["hour_utc"] < found["interval_end_utc"]]
    return found.groupby(key).agg(hours=("hour_utc", "size"), covered=("coverage", "sum"))


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
