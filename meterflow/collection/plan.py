"""Plan a dispatch: which meter windows are due or missing."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from meterflow.collection.batch import Days
from meterflow.collection.catalog import Catalog, read_catalog
from meterflow.collection.collect import Connector, MeterWindow
from meterflow.common.storage import Storage
from meterflow.common.timeutil import HOUR, HourWindow
from meterflow.configuration.config import Meter, Participant
from meterflow.jobs.periods import job_span

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
    A meter with ETL jobs is planned only where the window meets them (its files may still
    hold other hours: they are kept).
    An incomplete hour stays due until it settles (meterflow.collection.catalog); then it is
    final. Where the source revises its estimates (`revises_estimates`), an estimated hour is
    incomplete: asked again until it is measured or settles. Each day file is read once for
    all meters.
    """
    catalog = catalog or read_catalog(storage)
    days = Days(storage)
    hours = window.hours()
    hours_ns = hours.asi8 if hours.unit == "ns" else hours.as_unit("ns").asi8
    planned = []
    for meter in participant.meters:
        connector = connector_type(meter)
        in_jobs = _in_etl_jobs(participant, meter, hours)
        if not in_jobs.any():
            continue
        estimates = not getattr(connector, "revises_estimates", False)
        complete = days.complete(meter, window.start, window.end, estimates)
        due = ~np.isin(hours_ns, complete) & in_jobs
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


def _in_etl_jobs(participant: Participant, meter: Meter, hours: pd.DatetimeIndex) -> np.ndarray:
    """Which hours the meter's ETL jobs cover (all of them for its implicit open-ended job)."""
    jobs = [job for job in meter.etl_jobs if not job.implicit]
    if not jobs:
        return np.ones(len(hours), dtype=bool)
    zone = participant.property(meter.property_id).timezone
    covered = np.zeros(len(hours), dtype=bool)
    for job in jobs:
        start, end = job_span(job.start, job.end, zone)
        covered |= (start is None or hours >= start) & (end is None or hours < end)
    return covered
