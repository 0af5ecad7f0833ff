"""Plan a dispatch: which meter windows are due or missing."""

from __future__ import annotations

from collections.abc import Callable

from meterflow.catalog import Catalog, read_catalog
from meterflow.collect import Connector, Days, MeterWindow, is_complete
from meterflow.config import Meter, Participant
from meterflow.storage import Storage
from meterflow.timeutil import HOUR, HourWindow

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
    An incomplete hour stays due until it settles (meterflow.catalog); then it is final. Each
    day file is read once for all meters.
    """
    catalog = catalog or read_catalog(storage)
    days = Days(storage)
    planned = []
    for meter in participant.meters:
        connector = connector_type(meter)
        stored = days.meter_hours(meter, window.start, window.end)
        pending = window.hours().difference(stored.loc[is_complete(stored), "hour_utc"])
        state = catalog.meters.get(meter.id)
        if state is not None:
            pending = pending.difference(state.settled_hours(window))
        if connector.polls:
            planned.append(MeterWindow(meter.id, window, len(pending)))
        elif len(pending):
            span = HourWindow(pending[0].to_pydatetime(), pending[-1].to_pydatetime() + HOUR)
            planned.append(MeterWindow(meter.id, span, len(pending)))
    return planned
