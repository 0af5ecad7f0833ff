"""Plan a dispatch: which meter windows are due or missing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from meterflow.collect import Connector, complete_hours
from meterflow.config import Meter, Participant
from meterflow.meter_state import read_state
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
    connector_type: Callable[[Meter], type[Connector]],
) -> list[MeterWindow]:
    """One window per meter that has work: the span of its incomplete hours that are not final.

    A backlog collapses into one contiguous span per meter. Meters whose connector polls (files,
    inboxes) are always planned over the whole window, since new data may arrive for any hour.
    An incomplete hour stays due until it settles (meterflow.meter_state); then it is final.
    """
    planned = []
    for meter in participant.meters:
        connector = connector_type(meter)
        pending = window.hours().difference(complete_hours(storage, meter, window))
        pending = pending.difference(read_state(storage, meter).settled_hours(window))
        if connector.polls:
            planned.append(MeterWindow(meter.id, window, len(pending)))
        elif len(pending):
            span = HourWindow(pending[0].to_pydatetime(), pending[-1].to_pydatetime() + HOUR)
            planned.append(MeterWindow(meter.id, span, len(pending)))
    return planned
