"""`collect`: fetch, archive and standardise the due meter windows of one participant."""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import flow
from prefect.futures import wait

from flows.naming import participant_window
from meterflow.config import Participant
from meterflow.errors import MeterflowError
from meterflow.timeutil import HOUR, HourWindow
from tasks.collect import collect_meter_window, plan_participant
from tasks.participants import validate_participant


@dataclass
class MeterOutcome:
    participant: str
    meter: str
    hours_new: int = 0
    hours_cached: int = 0
    hours_missing: int = 0
    files_new: int = 0
    status: str = "ok"
    why: str = ""


def failures(outcomes: list[MeterOutcome]) -> list[str]:
    """`participant/meter: why` for every failed outcome."""
    return [f"{o.participant}/{o.meter}: {o.why}" for o in outcomes if o.status == "failed"]


@dataclass
class Collection:
    """What one participant's collection did, and which hours changed."""

    outcomes: list[MeterOutcome] = field(default_factory=list)
    changed: HourWindow | None = None


def collect_participant(
    data_root: str,
    participant: Participant,
    window: HourWindow,
    meter_ids: list[str] | None = None,
) -> Collection:
    """Plan and run the participant's meter windows concurrently; one failure stays alone."""
    planned = plan_participant(data_root, participant, window)
    if meter_ids:
        planned = [p for p in planned if p.meter_id in meter_ids]
    futures = [collect_meter_window.submit(data_root, participant, p) for p in planned]
    wait(futures)
    collection = Collection()
    first, last = None, None
    for plan, future in zip(planned, futures, strict=True):
        outcome = MeterOutcome(participant.id, plan.meter_id)
        result = future.state.result(raise_on_failure=False)
        if isinstance(result, BaseException):
            outcome.status, outcome.why = "failed", _reason(result)
        else:
            outcome.hours_new, outcome.files_new = result.hours_new, result.payloads_new
            outcome.hours_cached, outcome.hours_missing = result.hours_cached, result.hours_missing
            if result.rejected:
                outcome.status, outcome.why = "quarantined", "; ".join(result.rejected)
            if result.deferred:
                outcome.status, outcome.why = "deferred", result.deferred
            if result.hours_new:
                hours = result.changed["hour_utc"]
                first = min(filter(None, (first, hours.min().to_pydatetime())))
                last = max(filter(None, (last, hours.max().to_pydatetime())))
        collection.outcomes.append(outcome)
    if first is not None:
        collection.changed = HourWindow(first, last + HOUR)
    return collection


def _reason(error: BaseException) -> str:
    return str(error) if isinstance(error, MeterflowError) else f"{type(error).__name__}: {error}"


@flow(flow_run_name=participant_window)
def collect(
    participant_id: str,
    start: str,
    end: str,
    data_root: str = "data",
    meter_ids: list[str] | None = None,
) -> dict:
    """Collect one participant's meters for [start, end) (ISO times, UTC if no offset)."""
    window = HourWindow.parse(start, end)
    participant = validate_participant(data_root, participant_id)
    collection = collect_participant(data_root, participant, window, meter_ids)
    failed = failures(collection.outcomes)
    if failed:
        raise MeterflowError("meters failed:\n" + "\n".join(failed))
    return {"changed": str(collection.changed) if collection.changed else None}
