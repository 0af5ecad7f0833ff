"""What a dispatch records after its loads, for every participant at once: the meters' ETL
tasks, their health as of the window's end and the alert incidents that opens or resolves (a
few warehouse reads and one upsert per table for up to TASKS_AT_ONCE tasks)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from meterflow.collection.shards import MeterOutcome
from meterflow.common.memory import release_memory
from meterflow.common.timeutil import warehouse_time
from meterflow.configuration.config import Participant
from meterflow.jobs import alerts, health
from meterflow.jobs.etl import etl_executions, with_hours
from meterflow.jobs.store import last_error, record_tasks
from meterflow.mrv.store import needing_action
from meterflow.warehouse.backend import SqlWarehouse, Warehouse

# Outcome error types that say what went wrong with a whole participant.
LOAD_FAILED, CONFIG_INVALID = "LoadError", "ConfigError"
# ETL tasks reckoned, matched to their stored hours and upserted at a time: a month's backfill
# of 10,000 meters is 300,000 tasks, which at once grew the flow process by about 470 MiB.
TASKS_AT_ONCE = 25_000
TASK_ROWS = 1000  # the tasks a run shows: failed, quarantined, deferred first, then others


@dataclass
class Tracked:
    """The tasks this run wrote (`task_counts` by status; `tasks`, the first TASK_ROWS of them,
    problems first), every meter's health as evaluated, and the incidents opened or resolved."""

    tasks: pd.DataFrame = field(default_factory=pd.DataFrame)
    task_counts: Counter = field(default_factory=Counter)
    health: list[dict] = field(default_factory=list)
    incidents: list[dict] = field(default_factory=list)


def track(
    wh: Warehouse,
    participant_ids: list[str],
    participants: list[Participant],
    outcomes: list[MeterOutcome],
    thresholds_of: Callable[[Participant], dict[str, health.Thresholds]],
    started: datetime,
    ended: datetime,
    as_of: datetime,
    rerun: bool = False,
    notify: str | None = None,
    look_forward: bool = True,
) -> Tracked:
    """Record the meters' ETL tasks; then (`look_forward`) evaluate their health as of `as_of`
    and open or resolve incidents, the messages going to each participant's notification block
    or `notify`. A participant last evaluated after `as_of` (a rerun of an older window) has
    its tasks recorded only: health and alerts look forward."""
    load_errors = {
        o.participant: o.why for o in outcomes if o.meter == "*" and o.error_type == LOAD_FAILED
    }
    tracked, runs = Tracked(), []
    for group in _groups(participants, outcomes):
        executions = etl_executions(group, outcomes, load_errors, started, ended, rerun)
        written = record_tasks(wh, group, with_hours(wh, executions, as_of))
        del executions
        tracked.tasks = _shown(pd.concat([tracked.tasks, written]) if runs else written)
        tracked.task_counts.update(written["status"].value_counts().to_dict())
        runs.append(_runs(written))
        del written
        release_memory()
    if not look_forward or not participant_ids:
        return tracked
    ids = [p.id for p in participants]
    before = health.previous(wh, ids) if ids else pd.DataFrame(columns=health.COLUMNS)
    latest = pd.to_datetime(before["evaluated_utc"]).groupby(before["participant_id"]).max()
    now = pd.Timestamp(warehouse_time(as_of))
    current = [p for p in participants if latest.get(p.id, now) <= now]
    found = pd.DataFrame(columns=health.COLUMNS)
    if current:
        found = health.evaluate(
            health.meter_thresholds(current, thresholds_of),
            health.last_data(wh, [p.id for p in current], as_of),
            pd.concat(runs) if runs else _runs(pd.DataFrame()),
            before,
            as_of,
        )
        wh.upsert("meter_health", found)
    tracked.health = found.to_dict("records")
    conditions = alerts.meter_conditions(found)
    scope = {(p.id, kind) for p in current for kind in alerts.METER_KINDS.values()}
    for participant in current:
        if isinstance(wh, SqlWarehouse) and any(m.mrv_jobs for m in participant.meters):
            scope.add((participant.id, "mrv_review"))
            waiting = needing_action(wh, participant.id)
            if waiting:
                records = ", ".join(record.record_id for record, _ in waiting)
                conditions.append(
                    alerts.Condition(
                        participant.id,
                        "mrv_review",
                        "mrv",
                        now,
                        last_error=f"{len(waiting)} records: {records}",
                    )
                )
    stale = {p.id for p in participants} - {p.id for p in current}
    scope |= {(pid, "config_invalid") for pid in participant_ids if pid not in stale}
    conditions += [
        alerts.Condition(o.participant, "config_invalid", "configuration", now, last_error=o.why)
        for o in outcomes
        if o.meter == "*" and o.error_type == CONFIG_INVALID
    ]
    notify_of = {pid: notify for pid in participant_ids} | {
        p.id: p.notify or notify for p in participants
    }
    changed = alerts.reconcile(wh, conditions, scope, notify_of, as_of)
    tracked.incidents = changed.to_dict("records")
    return tracked


def _groups(
    participants: list[Participant], outcomes: list[MeterOutcome]
) -> Iterator[list[Participant]]:
    """The participants in groups of about TASKS_AT_ONCE ETL tasks (a day's task per meter and
    day of its window, as most jobs are daily), every participant in one."""
    days: Counter = Counter()
    for o in outcomes:
        if o.start:
            hours = (pd.Timestamp(o.end) - pd.Timestamp(o.start)) / pd.Timedelta(hours=1)
            days[o.participant] += hours / 24 + 1
    group, size = [], 0.0
    for participant in participants:
        if group and size + days[participant.id] > TASKS_AT_ONCE:
            yield group
            group, size = [], 0.0
        group.append(participant)
        size += days[participant.id]
    if group:
        yield group


def _shown(tasks: pd.DataFrame) -> pd.DataFrame:
    """The first TASK_ROWS tasks: failed, quarantined, deferred, then the others."""
    if tasks.empty:
        return tasks
    order = tasks["status"].map({"failed": 0, "quarantined": 1, "deferred": 2}).fillna(3)
    shown = tasks.assign(order=order).sort_values(["order", "task_id"]).head(TASK_ROWS)
    return shown.drop(columns="order").reset_index(drop=True)


def _runs(written: pd.DataFrame) -> pd.DataFrame:
    """Per meter, this run's worst ETL task `status` and its `error` (when it failed)."""
    columns = ["participant_id", "meter_id", "status", "error"]
    if written.empty:
        return pd.DataFrame(columns=columns)
    worst = {"failed": 0, "quarantined": 1, "deferred": 2, "done": 3}
    etl = written[written["type"] == "etl"].assign(rank=written["status"].map(worst))
    first = etl.sort_values("rank").drop_duplicates(["participant_id", "meter_id"])
    failed = first["status"].eq("failed")
    return first.assign(error=first["errors"].where(failed).map(last_error, na_action="ignore"))[
        columns
    ]
