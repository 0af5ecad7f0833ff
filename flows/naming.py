"""Run names that say what runs, e.g. `collect/acme/2026-03-30T00Z..2026-04-13T00Z`."""

from __future__ import annotations

from prefect.runtime import flow_run

from meterflow.common.timeutil import HourWindow


def participant_window() -> str:
    """`<flow>/<participant>/<window>` from the running flow's parameters."""
    p = flow_run.parameters
    return f"{flow_run.flow_name}/{p['participant_id']}/{HourWindow.parse(p['start'], p['end'])}"
