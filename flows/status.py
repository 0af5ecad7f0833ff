"""Meter jobs, tasks and health as tables a person reads (`meterflow jobs`, `meterflow tasks`,
`meterflow status` and the demo), from the warehouse."""

from __future__ import annotations

import json

import pandas as pd
from rich.table import Table

STATE_STYLE = {"ok": "green", "late": "yellow", "deferred": "yellow", "quarantined": "yellow"}


def jobs_table(jobs: pd.DataFrame, title: str) -> Table:
    """A row per job: its span, latest task and, for MRV jobs, its records by status."""
    table = Table(title=title)
    table.add_column("participant", no_wrap=True)
    table.add_column("job", no_wrap=True)  # `<meter>/<type>-<interval>[-<start>]`
    for column in ("intervals", "last task", "stage", "status", "retries", "MRV records"):
        table.add_column(column, overflow="fold")  # wraps in a narrow terminal, never cuts
    for j in jobs.itertuples(index=False):
        start = _day(j.start_date) or "first data"
        span = f"{j.frequency} from {start}" + (
            f" to {_day(j.end_date)}" if _day(j.end_date) else ""
        )
        span += " (implicit)" if j.implicit else ""
        counts = {k: j._asdict()[k] for k in ("submitted", "rejected", "needs_action", "other")}
        records = ", ".join(
            f"{int(n)} {k.replace('_', ' ')}" for k, n in counts.items() if pd.notna(n) and n
        )
        table.add_row(
            j.participant_id,
            j.job_id,
            span,
            _text(j.last_task_id).split("@")[-1].replace("T", " "),
            _text(j.last_task_stage),
            _text(j.last_task_status),
            _text(j.last_task_retries),
            records if j.type == "mrv" else "",
        )
    return table


def tasks_table(tasks: pd.DataFrame, title: str) -> Table:
    """A row per task: interval, stage, status, retries, hours and coverage, its last error."""
    table = Table(title=title)
    for column in (
        "interval start (UTC)",
        "job",
        "stage",
        "status",
        "retries",
        "hours",
        "coverage",
        "ended (UTC)",
        "errors",
    ):
        table.add_column(column, overflow="fold")
    for t in tasks.itertuples(index=False):
        errors = json.loads(t.errors) if isinstance(t.errors, str) and t.errors else []
        shown = "; ".join(f"{e['at']} {e['type']}: {e['message']}" for e in errors[-3:])
        table.add_row(
            f"{pd.Timestamp(t.interval_start_utc):%Y-%m-%d %H:%M}",
            t.job_id,
            t.stage,
            t.status,
            str(t.retry_count),
            _text(t.hours_produced),
            "" if pd.isna(t.coverage) else f"{t.coverage:.0%}",
            f"{pd.Timestamp(t.ended_utc):%Y-%m-%d %H:%M}",
            (f"({len(errors)}) " if len(errors) > 3 else "") + shown,
        )
    return table


def health_table(health: pd.DataFrame, title: str) -> Table:
    """A row per meter: its state, since when, its last data and its last error."""
    table = Table(title=title)
    for column in ("participant", "meter", "property", "state", "since (UTC)", "last data"):
        table.add_column(column, no_wrap=True)
    table.add_column("failed runs", justify="right")
    table.add_column("last error", overflow="fold")
    for h in health.itertuples(index=False):
        style = STATE_STYLE.get(h.state, "red")
        table.add_row(
            h.participant_id,
            h.meter_id,
            h.property_id,
            f"[{style}]{h.state}[/]",
            _time(h.since_utc),
            _time(h.last_data_utc),
            str(h.failed_runs),
            _text(h.last_error),
        )
    return table


def _text(value) -> str:
    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _day(value) -> str:
    return "" if value is None or pd.isna(value) else f"{pd.Timestamp(value):%Y-%m-%d}"


def _time(value) -> str:
    return "" if value is None or pd.isna(value) else f"{pd.Timestamp(value):%Y-%m-%d %H:%M}"
