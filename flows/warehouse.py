"""`load` and `aggregate`: (re)build a participant's warehouse rows for a window.

Both read the standardised store and upsert, so they can be rerun on their own at any time,
e.g. `aggregate` after a change of aggregation method in the participant's XML.
"""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from meterflow.timeutil import HourWindow
from tasks.participants import validate_participant
from tasks.warehouse import aggregate_window, load_window


def _run_name() -> str:
    p = flow_run.parameters
    return f"{flow_run.flow_name}/{p['participant_id']}/{HourWindow.parse(p['start'], p['end'])}"


@flow(flow_run_name=_run_name)
def load(
    participant_id: str,
    start: str,
    end: str,
    data_root: str = "data",
    warehouse_path: str = "data/warehouse.duckdb",
) -> dict:
    """Upsert the participant's configuration and meter-hours in [start, end)."""
    participant = validate_participant(data_root, participant_id)
    counts = load_window(data_root, warehouse_path, participant, HourWindow.parse(start, end))
    return {"inserted": counts.inserted, "updated": counts.updated}


@flow(flow_run_name=_run_name)
def aggregate(
    participant_id: str,
    start: str,
    end: str,
    data_root: str = "data",
    warehouse_path: str = "data/warehouse.duckdb",
) -> dict:
    """Recompute and upsert the participant's property-hours in [start, end)."""
    participant = validate_participant(data_root, participant_id)
    counts = aggregate_window(data_root, warehouse_path, participant, HourWindow.parse(start, end))
    return {"inserted": counts.inserted, "updated": counts.updated}
