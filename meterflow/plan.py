"""Plan a dispatch: which meter windows are due or missing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from meterflow.collect import Connector, complete_hours
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
    connector_type: Callable[[Meter], type[Connector]],
    now: datetime | None = None,
) -> list[MeterWindow]:
    """One window per meter that has work: the span of its incomplete hours.

    A backlog collapses into one contiguous span per meter. Meters whose connector polls (files,
    inboxes) are always planned over the whole window, since new data may arrive for any hour;
    hours younger than the connector's settle time are due again until they settle.
    """
    now = now or datetime.now(UTC)
    planned = []
    for meter in participant.meters:
        connector = connector_type(meter)
        pending = window.hours().difference(complete_hours(storage, meter, window))
        unsettled = window.hours()[window.hours() >= now - connector.settle - HOUR]
        pending = pending.union(unsettled) if connector.settle else pending
        if connector.polls:
            planned.append(MeterWindow(meter.id, window, len(pending)))
        elif len(pending):
            span = HourWindow(pending[0].to_pydatetime(), pending[-1].to_pydatetime() + HOUR)
            planned.append(MeterWindow(meter.id, span, len(pending)))
    return planned
