"""`load` and `aggregate`: (re)build a participant's warehouse rows for a window.

Both read the standardised store and upsert, so they can be rerun on their own at any time,
e.g. `aggregate` after a change of aggregation method in the participant's XML.
"""

from __future__ import annotations

from prefect import flow

import flows.heartbeats  # noqa: F401  (a flow run ends when its work ends)
from flows.naming import participant_window
from meterflow.common.timeutil import HourWindow
from tasks.participants import validate_participant
from tasks.warehouse import aggregate_window, load_window


def _upsert_window(step, participant_id, start, end, data_root, warehouse) -> dict:
    participant = validate_participant(data_root, participant_id)
    counts = step(data_root, warehouse, participant, HourWindow.parse(start, end))
    return {"inserted": counts.inserted, "updated": counts.updated}


@flow(flow_run_name=participant_window)
def load(
    participant_id: str,
    start: str,
    end: str,
    data_root: str = "data",
    warehouse: str = "data/warehouse.duckdb",
) -> dict:
    """Upsert the participant's configuration and meter-hours in [start, end)."""
    return _upsert_window(load_window, participant_id, start, end, data_root, warehouse)


@flow(flow_run_name=participant_window)
def aggregate(
    participant_id: str,
    start: str,
    end: str,
    data_root: str = "data",
    warehouse: str = "data/warehouse.duckdb",
) -> dict:
    """Recompute and upsert the participant's property-hours in [start, end)."""
    return _upsert_window(aggregate_window, participant_id, start, end, data_root, warehouse)
