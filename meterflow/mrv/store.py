"""MRV records and transitions in the warehouse database (DuckDB or PostgreSQL); the tasks of
MRV jobs are kept with every meter job's (meterflow.jobs.store).

A record's status changes only through `move`, which checks the current status and writes the new
status and its transition (time and reason) in one transaction: a crash leaves either the old
state or the new one, never a status without its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pandas as pd

from meterflow.common.errors import MeterflowError
from meterflow.common.timeutil import warehouse_time
from meterflow.configuration.config import Participant
from meterflow.jobs.periods import Period
from meterflow.jobs.store import record_tasks, task_id
from meterflow.mrv.extract import Extraction
from meterflow.warehouse.backend import SqlWarehouse, Warehouse

# Which status may follow which. `needs_review` and `rejected` wait for a person (or a new
# revision); `failed` (Guardian refused it, or retries ran out) may be retried explicitly.
ALLOWED = {
    None: {"extracted"},
    "extracted": {"verified", "rejected"},
    "verified": {"submitting", "failed"},  # failed: Guardian refused the sign-in
    "submitting": {"submitted", "failed", "needs_review", "verified"},
    "failed": {"verified"},
    "needs_review": {"submitted", "verified"},
}
# Statuses that wait for a person: every run says so until someone resolves them.
NEEDS_ACTION = ("failed", "needs_review")
# Statuses whose document may be at Guardian unknown to us: no new revision supersedes them.
UNSETTLED = ("submitting", "needs_review")
# The stage of its job's task a record in each status has reached.
STAGE_OF = {
    "extracted": "extraction",
    "verified": "verification",
    "rejected": "verification",
    **dict.fromkeys(("submitting", "submitted", "failed", "needs_review"), "submission"),
}


class TransitionRefused(MeterflowError):
    """The record is not in the status the caller expected (another run moved it)."""


@dataclass(frozen=True)
class Readback:
    """A policy block that lists the documents Guardian received. What it has shown is kept per
    participant, Guardian URL, policy and block: another URL, policy or tag inherits nothing."""

    guardian_url: str
    policy_id: str
    block: str


@dataclass(frozen=True)
class Record:
    record_id: str
    revision: int
    participant_id: str
    job_id: str
    meter_id: str
    device_id: str
    period: Period
    schema_version: int
    extraction: Extraction
    status: str
    reasons: str | None = None
    document_id: str | None = None
    confirmation: str | None = None


class MrvStore:
    def __init__(self, wh: Warehouse):
        if not isinstance(wh, SqlWarehouse):
            raise MeterflowError(
                "MRV records need a transactional warehouse (DuckDB or PostgreSQL), "
                f"not {type(wh).__name__}"
            )
        self.wh = wh
        wh.prepare()

    def _t(self, name: str) -> str:
        return self.wh.table(name)

    def record_task(
        self,
        participant: Participant,
        record: Record,
        error: BaseException | None = None,
        now: datetime | None = None,
    ) -> None:
        """The task of the record's job interval: the stage its record reached (its status), and
        the error this run met, if any (meterflow.jobs.store)."""
        now = now or datetime.now(UTC)
        x = record.extraction
        stage = STAGE_OF[record.status]
        execution = {
            "task_id": task_id(record.job_id, record.period.start),
            "participant_id": participant.id,
            "job_id": record.job_id,
            "meter_id": record.meter_id,
            "type": "mrv",
            "interval_start_utc": warehouse_time(record.period.start),
            "interval_end_utc": warehouse_time(record.period.end),
            "stage": stage,
            "status": record.status,
            "error": None
            if error is None
            else {"stage": stage, "type": type(error).__name__, "message": str(error)},
            "started_utc": warehouse_time(now),
            "ended_utc": warehouse_time(now),
            "hours_produced": x.hours_complete,
            "coverage": x.coverage,
            "record_id": record.record_id,
            "rerun": False,
            "found_new": True,
        }
        meter = participant.meter(record.meter_id)
        record_tasks(self.wh, [participant], pd.DataFrame([execution]), [meter])

    def latest(self, record_id: str) -> Record | None:
        rows = self.wh.query(
            f"SELECT * FROM {self._t('mrv_record')} WHERE record_id = ? "
            "ORDER BY revision DESC LIMIT 1",
            [record_id],
        )
        return _record(rows.iloc[0]) if len(rows) else None

    def records(self, participant_id: str, statuses: tuple[str, ...] | None = None) -> list[Record]:
        """The latest revision of every record of the participant (optionally by status)."""
        rows = self.wh.query(
            f"SELECT r.* FROM {self._t('mrv_record')} r WHERE r.participant_id = ? AND "
            f"r.revision = (SELECT max(q.revision) FROM {self._t('mrv_record')} q "
            "WHERE q.record_id = r.record_id) ORDER BY r.meter_id, r.period_start_utc",
            [participant_id],
        )
        found = [_record(row) for _, row in rows.iterrows()]
        return [r for r in found if statuses is None or r.status in statuses]

    def add_revision(self, record: Record, reason: str, now: datetime) -> Record:
        """A new revision, `extracted`: never an overwrite of an earlier one."""
        previous = self.latest(record.record_id)
        revision = previous.revision + 1 if previous else 1
        new = replace(record, revision=revision, status="extracted")
        x = new.extraction
        with self.wh.transaction():
            values = {
                "record_id": new.record_id,
                "revision": revision,
                "participant_id": new.participant_id,
                "job_id": new.job_id,
                "meter_id": new.meter_id,
                "device_id": new.device_id,
                "period_start_utc": warehouse_time(new.period.start),
                "period_end_utc": warehouse_time(new.period.end),
                "schema_version": new.schema_version,
                "energy_kwh": x.energy_kwh,
                "carbon_t": x.carbon_t,
                "factor_kg_per_kwh": x.factor_kg_per_kwh,
                "factor_edition": x.factor_edition,
                "market_carbon_t": x.market_carbon_t,
                "market_basis": x.market_basis,
                "hours_expected": x.hours_expected,
                "hours_complete": x.hours_complete,
                "hours_estimated": x.hours_estimated,
                "coverage": x.coverage,
                "status": "extracted",
                "updated_utc": warehouse_time(now),
            }
            # Columns by name: a warehouse upgraded from an older release has them in another order.
            self.wh.execute(
                f"INSERT INTO {self._t('mrv_record')} ({', '.join(values)}) "
                f"VALUES ({', '.join('?' * len(values))})",
                list(values.values()),
            )
            self._transition(new.record_id, revision, None, "extracted", reason, now)
        return new

    def move(
        self,
        record: Record,
        to: str,
        reason: str,
        now: datetime | None = None,
        confirmed_by: Readback | None = None,
        **fields: str,
    ) -> Record:
        """Change the record's status from the one it has (checked) to `to`, with the reason.
        `confirmed_by`: the read-back that listed its document, kept as evidence that this
        read-back shows the policy's documents (in the same transaction)."""
        now = now or datetime.now(UTC)
        if to not in ALLOWED.get(record.status, set()):
            raise TransitionRefused(f"record {record.record_id}: {record.status} -> {to}")
        lock = " FOR UPDATE" if self.wh.dialect == "postgres" else ""
        with self.wh.transaction():
            current = self.wh.query(
                f"SELECT status FROM {self._t('mrv_record')} "
                f"WHERE record_id = ? AND revision = ?{lock}",
                [record.record_id, record.revision],
            )["status"].iloc[0]
            if current != record.status:
                raise TransitionRefused(
                    f"record {record.record_id} rev {record.revision} is {current}, "
                    f"not {record.status}"
                )
            sets = ", ".join(f"{name} = ?" for name in ("status", "updated_utc", *fields))
            self.wh.execute(
                f"UPDATE {self._t('mrv_record')} SET {sets} WHERE record_id = ? AND revision = ?",
                [to, warehouse_time(now), *fields.values(), record.record_id, record.revision],
            )
            self._transition(record.record_id, record.revision, record.status, to, reason, now)
            if confirmed_by is not None:
                self._confirmation(record, confirmed_by, now)
        return replace(record, status=to, **fields)

    def _confirmation(self, record: Record, readback: Readback, now: datetime) -> None:
        self.wh.execute(
            f"INSERT INTO {self._t('mrv_confirmation')} VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            [
                record.participant_id,
                readback.guardian_url,
                readback.policy_id,
                readback.block,
                record.document_id,
                record.record_id,
                record.revision,
                warehouse_time(now),
            ],
        )

    def confirmed(self, participant_id: str, readback: Readback) -> set[str]:
        """Ids of the participant's documents this read-back has listed before."""
        rows = self.wh.query(
            f"SELECT document_id FROM {self._t('mrv_confirmation')} WHERE participant_id = ? "
            "AND guardian_url = ? AND policy_id = ? AND readback_block = ?",
            [participant_id, readback.guardian_url, readback.policy_id, readback.block],
        )
        return set(rows["document_id"])

    def resolve(self, record_id: str, to: str, by: str, why: str) -> Record:
        """A person's decision on a record that waits for one: `submitted` (Guardian has it, `why`
        is the evidence) or `verified` (released: the next run sends it)."""
        record = self.latest(record_id)
        if record is None:
            raise MeterflowError(f"no MRV record {record_id}")
        if record.status not in NEEDS_ACTION or to not in ALLOWED[record.status]:
            raise TransitionRefused(
                f"record {record_id} rev {record.revision} is {record.status}, it cannot become "
                f"{to}: only a needs_review record (to submitted or verified) or a failed one "
                "(to verified) can be resolved"
            )
        if not why.strip():
            raise MeterflowError(f"record {record_id}: say why (the evidence or the reason)")
        if to == "submitted":
            reason = f"marked submitted by {by}; evidence: {why}"
            return self.move(record, to, reason, confirmation=f"by {by}: {why}")
        return self.move(record, to, f"released for resend by {by}: {why}")

    def _transition(self, record_id, revision, old, new, reason, now) -> None:
        seq = self.wh.query(
            f"SELECT count(*) AS n FROM {self._t('mrv_transition')} "
            "WHERE record_id = ? AND revision = ?",
            [record_id, revision],
        )["n"].iloc[0]
        self.wh.execute(
            f"INSERT INTO {self._t('mrv_transition')} VALUES (?, ?, ?, ?, ?, ?, ?)",
            [record_id, revision, int(seq) + 1, old, new, warehouse_time(now), reason],
        )

    def transitions(self, record_id: str) -> pd.DataFrame:
        """The record's history, oldest first (a missing `from_status` is None)."""
        rows = self.wh.query(
            f"SELECT revision, seq, from_status, to_status, at_utc, reason "
            f"FROM {self._t('mrv_transition')} WHERE record_id = ? ORDER BY revision, seq",
            [record_id],
        )
        return rows.astype(object).where(rows.notna(), None)

    def submitted_overlapping(self, record: Record) -> list[str]:
        """Other submitted records of the same device whose interval overlaps this one."""
        rows = self.wh.query(
            f"SELECT record_id, revision FROM {self._t('mrv_record')} "
            "WHERE participant_id = ? AND device_id = ? AND status = 'submitted' "
            "AND period_start_utc < ? AND period_end_utc > ?",
            [
                record.participant_id,
                record.device_id,
                warehouse_time(record.period.end),
                warehouse_time(record.period.start),
            ],
        )
        return [f"{r.record_id} rev {r.revision}" for r in rows.itertuples()]


def needing_action(wh: Warehouse, participant_id: str | None = None) -> list[tuple[Record, str]]:
    """Records (latest revisions) that wait for a person, with the reason of their last move."""
    t = wh.table
    of_participant = "AND r.participant_id = ?" if participant_id is not None else ""
    rows = wh.query(
        f"""SELECT r.*, t.reason AS last_reason FROM {t("mrv_record")} r
        JOIN {t("mrv_transition")} t ON t.record_id = r.record_id AND t.revision = r.revision
             AND t.seq = (SELECT max(u.seq) FROM {t("mrv_transition")} u
                          WHERE u.record_id = r.record_id AND u.revision = r.revision)
        WHERE r.status IN ({", ".join("?" for _ in NEEDS_ACTION)}) {of_participant}
          AND r.revision = (SELECT max(q.revision) FROM {t("mrv_record")} q
                            WHERE q.record_id = r.record_id)
        ORDER BY r.participant_id, r.meter_id, r.period_start_utc""",
        [*NEEDS_ACTION, *([participant_id] if participant_id is not None else [])],
    )
    return [(_record(row), row["last_reason"]) for _, row in rows.iterrows()]


def _utc(value) -> datetime:
    return pd.Timestamp(value).tz_localize("UTC").to_pydatetime()


def _record(row) -> Record:
    def optional(name):
        value = row[name]
        return None if value is None or (isinstance(value, float) and pd.isna(value)) else value

    return Record(
        record_id=row["record_id"],
        revision=int(row["revision"]),
        participant_id=row["participant_id"],
        job_id=row["job_id"],
        meter_id=row["meter_id"],
        device_id=row["device_id"],
        period=Period(_utc(row["period_start_utc"]), _utc(row["period_end_utc"])),
        schema_version=int(row["schema_version"]),
        extraction=Extraction(
            energy_kwh=float(row["energy_kwh"]),
            carbon_t=optional("carbon_t"),
            factor_kg_per_kwh=optional("factor_kg_per_kwh"),
            factor_edition=optional("factor_edition"),
            hours_expected=int(row["hours_expected"]),
            hours_complete=int(row["hours_complete"]),
            hours_estimated=int(row["hours_estimated"]),
            market_carbon_t=optional("market_carbon_t"),
            market_basis=optional("market_basis"),
        ),
        status=row["status"],
        reasons=optional("reasons"),
        document_id=optional("document_id"),
        confirmation=optional("confirmation"),
    )
