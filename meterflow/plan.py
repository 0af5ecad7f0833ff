"""Plan a dispatch: which meter windows are due or missing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from meterflow.collect import complete_hours
from meterflow.config import Meter, Participant
from meterflow.storage import Storage
from meterflow.timeutil import HOUR, HourWindow


@dataclass(frozen=True)
class MeterWindow:
    meter_id: str
    window: HourWindow
    hours_pending: int


def plan_meters(
    storage: Storage,
    participant: Participant,
    window: HourWindow,
    polls: Callable[[Meter], bool],
) -> list[MeterWindow]:
    """One window per meter that has work: the span of its incomplete hours.

    A backlog collapses into one contiguous span per meter. Meters fed by files (`polls`) are
    always planned over the whole window, since a new file may arrive for any hour.
    """
    planned = []
    for meter in participant.meters:
        pending = window.hours().difference(complete_hours(storage, meter, window))
        if polls(meter):
            planned.append(MeterWindow(meter.id, window, len(pending)))
        elif len(pending):
            span = HourWindow(pending[0].to_pydatetime(), pending[-1].to_pydatetime() + HOUR)
            planned.append(MeterWindow(meter.id, span, len(pending)))
    return planned
