"""After a dispatch's loads: the meters' ETL tasks, their health and the alerts it raises (one
task run for every participant of the dispatch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.blocks.abstract import NotificationBlock
from prefect.blocks.core import Block
from prefect.events import emit_event

from blocks import open_warehouse
from connectors import health_thresholds
from meterflow.collection.shards import MeterOutcome
from meterflow.configuration.config import Participant
from meterflow.jobs import alerts, health
from meterflow.jobs.etl import etl_executions, with_hours
from meterflow.jobs.store import last_error, record_tasks
from meterflow.mrv.store import needing_action
from meterflow.warehouse.backend import SqlWarehouse

# Outcome types that say what went wrong with a whole participant.
LOAD_FAILED, CONFIG_INVALID = "LoadError", "ConfigError"


@dataclass
class Tracked:
    """What `track_jobs` found: every meter's health and the incidents opened or resolved."""

    health: list[dict] = field(default_factory=list)
    incidents: list[dict] = field(default_factory=list)


@task(task_run_name="jobs/{label}")
def track_jobs(
    warehouse: str,
    participant_ids: list[str],
    participants: list[Participant],
    outcomes: list[MeterOutcome],
    started: datetime,
    as_of: datetime,
    label: str,
    rerun: bool = False,
    notify: str | None = None,
    look_forward: bool = True,
) -> Tracked:
    """Record the meters' ETL tasks, evaluate their health as of `as_of` (a dispatch's window
    end) and open or resolve alert incidents, then send the messages that are due through each
    participant's notification block (or the platform's, `notify`). A dispatch of a window older
    than the last one evaluated, or a backfill (`look_forward=False`, `rerun=True`), records
    tasks only: health and alerts look forward."""
    logger = get_run_logger()
    tracked = Tracked()
    conditions: list[alerts.Condition] = []
    scope: set[tuple[str, str]] = set()
    ended = datetime.now(UTC)
    with open_warehouse(warehouse) as wh:
        wh.prepare()
        for participant in participants:
            mine = [o for o in outcomes if o.participant == participant.id]
            load_error = next(
                (o.why for o in mine if o.meter == "*" and o.error_type == LOAD_FAILED), None
            )
            executions = etl_executions(participant, mine, load_error, started, ended, rerun)
            written = record_tasks(wh, participant, with_hours(wh, executions, as_of))
            before = health.previous(wh, participant.id)
            last = max((row["evaluated_utc"] for row in before.values()), default=None)
            if not look_forward or (last is not None and pd.Timestamp(last) > _naive(as_of)):
                continue
            found = health.evaluate(
                participant,
                health_thresholds(participant),
                health.last_data(wh, participant.id, as_of),
                _runs(written),
                before,
                as_of,
            )
            wh.upsert("meter_health", found)
            tracked.health += found.to_dict("records")
            conditions += alerts.meter_conditions(found)
            scope |= {(participant.id, kind) for kind in alerts.METER_KINDS.values()}
            if isinstance(wh, SqlWarehouse) and any(m.mrv_jobs for m in participant.meters):
                waiting = needing_action(wh, participant.id)
                scope.add((participant.id, "mrv_review"))
                if waiting:
                    ids = ", ".join(record.record_id for record, _ in waiting)
                    conditions.append(
                        alerts.Condition(
                            participant.id,
                            "mrv_review",
                            "mrv",
                            _naive(as_of),
                            last_error=f"{len(waiting)} records: {ids}",
                        )
                    )
        for participant_id in participant_ids if look_forward else []:
            scope.add((participant_id, "config_invalid"))
        conditions += [
            alerts.Condition(
                o.participant, "config_invalid", "configuration", _naive(as_of), last_error=o.why
            )
            for o in outcomes
            if look_forward and o.meter == "*" and o.error_type == CONFIG_INVALID
        ]
        notify_of = {p: notify for p in participant_ids} | {
            p.id: p.notify or notify for p in participants
        }
        changed = alerts.reconcile(wh, conditions, scope, notify_of, as_of)
        tracked.incidents = changed.to_dict("records")
        for incident in tracked.incidents:
            _emit(incident)
            subject, body = alerts.message(incident)
            if incident["notify"] is None:
                logger.warning("%s (no notification block: set <alerts notify=...>)", body)
        for incident in alerts.unsent(wh).to_dict("records"):
            subject, body = alerts.message(incident)
            try:
                _send(incident["notify"], subject, body)
            except Exception as exc:  # sent by the next dispatch
                logger.warning("alert not sent through %s: %s", incident["notify"], exc)
                continue
            alerts.mark_sent(wh, incident, datetime.now(UTC))
            logger.info("alert sent through %s: %s", incident["notify"], subject)
    return tracked


def _runs(written: pd.DataFrame) -> dict[str, tuple[str, str | None]]:
    """Per meter, this run's worst task status and its error."""
    if written.empty:
        return {}
    worst = {"failed": 0, "quarantined": 1, "deferred": 2, "done": 3}
    etl = written[written["type"] == "etl"].assign(rank=written["status"].map(worst))
    runs = {}
    for row in etl.sort_values("rank").drop_duplicates("meter_id").itertuples(index=False):
        error = last_error(row.errors) if row.status == "failed" else None
        runs[row.meter_id] = (row.status, error)
    return runs


def _send(slug: str, subject: str, body: str) -> None:
    block = Block.load(slug)
    if not isinstance(block, NotificationBlock):
        raise TypeError(f"block {slug} is a {type(block).__name__}, not a notification block")
    with block.raise_on_failure():
        block.notify(body, subject)


def _emit(incident: dict) -> None:
    """A Prefect event per incident opened or resolved: the UI's event feed shows it, and an
    automation can act on it (docs/jobs.md)."""
    state = "opened" if incident["resolved_utc"] is None else "resolved"
    participant, kind, subject = (incident[k] for k in ("participant_id", "kind", "subject"))
    emit_event(
        event=f"meterflow.incident.{state}",
        resource={
            "prefect.resource.id": f"meterflow.{kind}.{participant}.{subject}",
            "prefect.resource.name": f"{participant}/{subject}",
            "meterflow.participant": participant,
            "meterflow.kind": kind,
        },
        payload={k: str(v) if v is not None else None for k, v in incident.items()},
    )


def _naive(moment: datetime) -> pd.Timestamp:
    return pd.Timestamp(moment).tz_convert("UTC").tz_localize(None)


def health_artifact(tracked: Tracked, window) -> None:
    """The meters' health as a table artifact; its description names the incidents."""
    rows = [
        {
            "participant": h["participant_id"],
            "meter": h["meter_id"],
            "property": h["property_id"],
            "state": h["state"],
            "since": _shown(h["since_utc"]),
            "last data": _shown(h["last_data_utc"]),
            "failed runs": h["failed_runs"],
            "last error": h["last_error"] or "",
        }
        for h in tracked.health
    ]
    told = [alerts.message(incident)[0] for incident in tracked.incidents]
    create_table_artifact(
        key="meter-health",
        table=rows or [{"state": "no participant evaluated"}],
        description=f"Meter health as of {window.end:%Y-%m-%d %H:%M} UTC"
        + (f"; incidents: {'; '.join(told)}" if told else "; no incident opened or resolved"),
    )


def _shown(moment) -> str:
    return "" if moment is None or pd.isna(moment) else f"{pd.Timestamp(moment):%Y-%m-%d %H:%M}"
