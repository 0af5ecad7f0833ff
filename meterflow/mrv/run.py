"""An MRV run for one participant: extract and verify every due interval of its MRV jobs, then
submit what is verified (and reconcile what an earlier run left in `submitting`). Records that
wait for a person (`failed`, `needs_review`) are reported by every run until someone resolves
them (`MrvStore.resolve`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime

from meterflow.common.errors import MeterflowError
from meterflow.configuration.config import Participant
from meterflow.jobs.periods import due_periods
from meterflow.jobs.store import job_id, sync_jobs
from meterflow.mrv.extract import Extraction, extract, record_id
from meterflow.mrv.guardian import GuardianClient
from meterflow.mrv.store import UNSETTLED, MrvStore, Record, needing_action
from meterflow.mrv.submit import submit
from meterflow.mrv.verify import verify
from meterflow.warehouse.backend import Warehouse


@dataclass
class MrvOutcome:
    """One record's line in the MRV run's table."""

    meter: str
    period_start: str
    record_id: str
    revision: int
    status: str
    energy_kwh: float
    carbon_t: float | None
    market_carbon_t: float | None = None
    why: str = ""


RESOLVE_HINT = (
    "resolve each with: meterflow mrv-resolve --record <id> --submitted --evidence TEXT "
    "(Guardian has it) or --release --evidence TEXT (it does not: the next run sends it)"
)


def needs_action_line(o: MrvOutcome) -> str:
    """One line per record that waits for a person: id, revision, interval, status, why."""
    return f"{o.record_id} rev {o.revision} {o.meter} {o.period_start} {o.status}: {o.why}"


class RecordsNeedAction(MeterflowError):
    """The participant has records waiting for a person; `rows` is the run's own table."""

    def __init__(self, message: str, rows: list[dict]):
        super().__init__(message)
        self.rows = rows

    @classmethod
    def of(cls, participant_id: str, waiting: list[MrvOutcome], rows: list[dict]):
        lines = "".join(f"{needs_action_line(w)}\n" for w in waiting)
        return cls(
            f"{len(waiting)} MRV records of {participant_id} need action:\n{lines}{RESOLVE_HINT}",
            rows,
        )

    def __reduce__(self):  # Prefect may pickle a state's data: keep the rows
        return type(self), (str(self), self.rows)


def extract_and_verify(
    wh: Warehouse,
    store: MrvStore,
    participant: Participant,
    until: datetime,
    now: datetime,
    since: datetime | None = None,
) -> list[Record]:
    """New records or revisions for intervals ended by `until` (and ending after `since`, the
    start of what changed) whose figures are new or changed; unchanged ones are left alone."""
    touched = []
    sync_jobs(wh, participant)
    for meter in participant.meters:
        zone = participant.property(meter.property_id).timezone
        for job in meter.mrv_jobs:
            device = meter.device_id or meter.id
            for period in due_periods(job, zone, until):
                if since is not None and period.end <= since:
                    continue
                rid = record_id(participant.id, device, period, job.schema_version)
                figures = extract(wh, participant, meter, period)
                latest = store.latest(rid)
                if latest is not None and _same(latest.extraction, figures):
                    continue
                if latest is not None and latest.status in UNSETTLED:
                    continue  # its document may be at Guardian: decided first, then re-extracted
                why = (
                    "first extraction"
                    if latest is None
                    else f"data changed since revision {latest.revision} ({latest.status})"
                )
                record = store.add_revision(
                    Record(
                        rid,
                        0,
                        participant.id,
                        job_id(meter, job),
                        meter.id,
                        device,
                        period,
                        job.schema_version,
                        figures,
                        "extracted",
                    ),
                    why,
                    now,
                )
                reasons = verify(figures, job, store.submitted_overlapping(record))
                record = store.move(
                    record,
                    "rejected" if reasons else "verified",
                    "; ".join(reasons) or "all rules passed",
                    now,
                    reasons="; ".join(reasons) or None,
                )
                store.record_task(participant, record, now=now)
                touched.append(record)
    return touched


def submit_pending(
    store: MrvStore,
    participant: Participant,
    client_for: Callable[[str], GuardianClient],
    now: datetime,
) -> list[tuple[Record, str]]:
    """Submit every verified record, and reconcile those an earlier run left in `submitting`.

    A Guardian that cannot be reached leaves the record where it was, with the error on its task.
    """
    guardian_of = {
        job_id(meter, job): job.guardian for meter in participant.meters for job in meter.mrv_jobs
    }
    done = []
    for record in store.records(participant.id, ("verified", "submitting")):
        try:
            after, error = submit(store, client_for(guardian_of[record.job_id]), record), None
        except MeterflowError as exc:
            after, error = store.latest(record.record_id), exc
        store.record_task(participant, after, error, now)
        done.append((after, str(error or "")))
    return done


def waiting(store: MrvStore, participant_id: str) -> list[MrvOutcome]:
    """The participant's records that wait for a person, with the reason of their last move."""
    return [outcome(record, why) for record, why in needing_action(store.wh, participant_id)]


def outcome(record: Record, why: str = "") -> MrvOutcome:
    x = record.extraction
    return MrvOutcome(
        meter=record.meter_id,
        period_start=f"{record.period.start:%Y-%m-%dT%H:%MZ}",
        record_id=record.record_id,
        revision=record.revision,
        status=record.status,
        energy_kwh=round(x.energy_kwh, 3),
        carbon_t=round(x.carbon_t, 6) if x.carbon_t is not None else None,
        market_carbon_t=round(x.market_carbon_t, 6) if x.market_carbon_t is not None else None,
        why=why or record.reasons or "",
    )


def summary_rows(outcomes: list[MrvOutcome]) -> list[dict]:
    return [asdict(o) for o in outcomes]


def _same(a: Extraction, b: Extraction) -> bool:
    def close(x, y):
        return (x is None and y is None) or (
            x is not None and y is not None and math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)
        )

    return (
        close(a.energy_kwh, b.energy_kwh)
        and close(a.carbon_t, b.carbon_t)
        and (a.hours_expected, a.hours_complete, a.hours_estimated)
        == (b.hours_expected, b.hours_complete, b.hours_estimated)
    )
