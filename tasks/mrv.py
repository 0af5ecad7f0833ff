"""MRV for one participant: extract, verify, submit (one task run per participant)."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks import load_policy, open_warehouse
from meterflow.common.http import Caller
from meterflow.configuration.config import Participant
from meterflow.mrv.guardian import GuardianClient
from meterflow.mrv.run import MrvOutcome, extract_and_verify, outcome, submit_pending, waiting
from meterflow.mrv.store import NEEDS_ACTION, MrvStore


@task(task_run_name="mrv/{participant.id}/until-{until:%Y-%m-%dT%H}Z", cache_policy=NO_CACHE)
def run_mrv(
    warehouse: str, participant: Participant, until: datetime, since: datetime | None = None
) -> tuple[list[MrvOutcome], list[MrvOutcome]]:
    """Records for the intervals ended by `until` (and after `since`); then every verified
    record is submitted and every interrupted submission reconciled. Returns this run's records
    and every record of the participant that waits for a person, from this run or before."""
    logger = get_run_logger()
    clients: dict[str, GuardianClient] = {}

    def client_for(block: str) -> GuardianClient:
        if block not in clients:
            caller = Caller(participant.id, "mrv", "guardian", block)
            clients[block] = GuardianClient(load_policy(block), caller)
        return clients[block]

    now = datetime.now(UTC)
    with open_warehouse(warehouse) as wh:
        store = MrvStore(wh)
        touched = extract_and_verify(wh, store, participant, until, now, since)
        sent = submit_pending(store, participant, client_for, now)
        stuck = waiting(store, participant.id)
    why = {o.record_id: o.why for o in stuck}  # e.g. why a read-back was not trusted
    rows = {r.record_id: outcome(r, why.get(r.record_id, "")) for r in touched}
    rows.update({r.record_id: outcome(r, error or why.get(r.record_id, "")) for r, error in sent})
    for row in rows.values():
        bad = row.status in ("rejected", *NEEDS_ACTION)
        log = logger.warning if bad else logger.info
        log("%s %s rev %d: %s %s", row.meter, row.period_start, row.revision, row.status, row.why)
    return list(rows.values()), stuck
