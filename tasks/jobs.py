"""After a dispatch's loads: the meters' ETL tasks, their health and the alerts it raises (one
task run for every participant of the dispatch)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.blocks.abstract import NotificationBlock
from prefect.blocks.core import Block
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from blocks import open_warehouse
from connectors import health_thresholds
from meterflow.collection.shards import MeterOutcome
from meterflow.configuration.config import Participant
from meterflow.jobs import alerts
from meterflow.jobs.store import last_error
from meterflow.jobs.track import Tracked, track


@task(task_run_name="jobs/{label}", cache_policy=NO_CACHE)
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
    with open_warehouse(warehouse) as wh:
        wh.prepare()
        tracked = track(
            wh,
            participant_ids,
            participants,
            outcomes,
            health_thresholds,
            started,
            datetime.now(UTC),
            as_of,
            rerun,
            notify,
            look_forward,
        )
        tasks_artifact(tracked, label)
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


def tasks_artifact(tracked: Tracked, label: str) -> None:
    """The meter tasks a run wrote (or updated): failed, quarantined, deferred first."""
    if tracked.tasks.empty:
        return
    # Only these columns iterated: each timestamp in a row would cost a conversion.
    columns = [
        "participant_id",
        "task_id",
        "stage",
        "status",
        "retry_count",
        "hours_produced",
        "errors",
    ]
    rows = [
        {
            "participant": t.participant_id,
            "task": t.task_id,
            "stage": t.stage,
            "status": t.status,
            "retries": int(t.retry_count),
            "hours": "" if pd.isna(t.hours_produced) else int(t.hours_produced),
            "last error": last_error(t.errors) or "",
        }
        for t in tracked.tasks[columns].itertuples(index=False)
    ]
    counts = tracked.task_counts
    total = sum(counts.values())
    more = f"; the first {len(rows)} shown (meterflow tasks)" if total > len(rows) else ""
    create_table_artifact(
        key="meter-tasks",
        table=rows,
        description=f"{label}: {total} meter tasks written ("
        + ", ".join(f"{n} {status}" for status, n in counts.most_common())
        + f"){more}",
    )


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
