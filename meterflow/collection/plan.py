"""Plan a dispatch: which meter windows are due or missing."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from meterflow.collection.batch import Days
from meterflow.collection.catalog import Catalog, read_catalog
from meterflow.collection.collect import Connector, MeterWindow
from meterflow.common.storage import Storage
from meterflow.common.timeutil import HOUR, HourWindow
from meterflow.configuration.config import Meter, Participant

__all__ = ["MeterWindow", "plan_meters"]


def plan_meters(
    storage: Storage,
    participant: Participant,
    window: HourWindow,
    connector_type: Callable[[Meter], type[Connector]],
    catalog: Catalog | None = None,
) -> list[MeterWindow]:
    """One window per meter that has work: the span of its incomplete hours that are not final.

    A backlog collapses into one contiguous span per meter. Meters whose connector polls (files,
    inboxes) are always planned over the whole window, since new data may arrive for any hour.
    An incomplete hour stays due until it settles (meterflow.collection.catalog); then it is
    final. Each day file is read once for all meters.
    """
    catalog = catalog or read_catalog(storage)
    days = Days(storage)
    hours = window.hours()
    hours_ns = hours.asi8 if hours.unit == "ns" else hours.as_unit("ns").asi8
    planned = []
    for meter in participant.meters:
        connector = connector_type(meter)
        due = ~np.isin(hours_ns, days.complete(meter, window.start, window.end))
        state = catalog.meters.get(meter.id)
        if state is not None and state.settled and due.any():
            due &= ~hours.isin(state.settled_hours(window))
        pending = int(due.sum())
        if connector.polls:
            planned.append(MeterWindow(meter.id, window, pending))
        elif pending:
            first, last = hours[np.argmax(due)], hours[len(due) - 1 - np.argmax(due[::-1])]
            span = HourWindow(first.to_pydatetime(), last.to_pydatetime() + HOUR)
            planned.append(MeterWindow(meter.id, span, pending))
    return planned
