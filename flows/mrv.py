"""`mrv`: turn a participant's loaded meter-hours into MRV records and submit them to Guardian.

Chained by `dispatch` after the warehouse load of a participant with MRV jobs, and runnable on its
own for a period (`until`: the intervals that ended by then). Rerunning it sends nothing new.
While any record of the participant waits for a person (`failed`, `needs_review`), every run ends
`Failed` (named `NeedsAction`) listing them, until `meterflow mrv-resolve` settles each one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run
from prefect.states import Failed

import flows.heartbeats  # noqa: F401  (a flow run ends when its work ends)
from meterflow.common.timeutil import floor_hour
from meterflow.mrv.run import RecordsNeedAction
from tasks.mrv import run_mrv
from tasks.participants import validate_participant


def _hour(value: str | None) -> datetime:
    """The whole UTC hour at or before an ISO time (UTC if no offset); default: now."""
    if not value:
        return floor_hour(datetime.now(UTC))
    moment = datetime.fromisoformat(value)
    return floor_hour(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _run_name() -> str:
    p = flow_run.parameters
    return f"mrv/{p['participant_id']}/until-{_hour(p.get('until')):%Y-%m-%dT%H}Z"


@flow(flow_run_name=_run_name)
def mrv(
    participant_id: str,
    until: str | None = None,
    data_root: str = "data",
    warehouse: str = "data/warehouse.duckdb",
    changed_from: str | None = None,
):
    """Extract, verify and submit the participant's MRV records for intervals ended by `until`
    (ISO time, UTC if no offset; default: this hour), only those ending after `changed_from` if
    given (dispatch passes the start of what it loaded). Returns this run's records; ends Failed
    (`NeedsAction`) naming every record of the participant that needs a person: `failed`
    (Guardian refused, or retries ran out) and `needs_review`, whichever run left them."""
    participant = validate_participant(data_root, participant_id)
    since = _hour(changed_from) if changed_from else None
    ran, stuck = run_mrv(warehouse, participant, _hour(until), since)
    rows = [asdict(o) for o in ran]
    counts = Counter(row["status"] for row in rows)
    done = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing new"
    seen = {row["record_id"] for row in rows}
    earlier = [asdict(o) for o in stuck if o.record_id not in seen]
    create_table_artifact(
        key=f"mrv-{participant_id}",
        table=rows + earlier or [{"status": "nothing new to extract or submit"}],
        description=f"MRV {participant_id}: {done}"
        + (f"; {len(stuck)} need action (meterflow mrv-resolve)" if stuck else ""),
    )
    if stuck:
        error = RecordsNeedAction.of(participant_id, stuck, rows)
        return Failed(name="NeedsAction", message=str(error), data=error)
    return rows
