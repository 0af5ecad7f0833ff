"""Collect one meter window: fetch -> keep raw log -> standardise hourly -> upsert, no Prefect.

The connector is passed in (connectors depend on the core, never the reverse). A connector's
`fetch` is its only I/O; `parse` is pure, so the archive can be re-standardised at any time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Protocol

import pandas as pd

from meterflow.config import Meter, Participant
from meterflow.errors import SourceDataError
from meterflow.hourly_store import read_hours, upsert_hours
from meterflow.http import SourceDeferred
from meterflow.intake import accept, consume, quarantine, quarantine_key
from meterflow.meter_state import MeterState, read_state, write_state
from meterflow.rawlog import Payload, RawLog
from meterflow.readings import SourceReadings, empty_hourly
from meterflow.standardise import standardise
from meterflow.storage import Storage
from meterflow.timeutil import HOUR, HourWindow, floor_hour
from meterflow.units import standard_unit, to_standard

# Payloads around new data that are re-read so that registers difference across file borders.
CONTEXT = timedelta(days=2)
# Hours around new data that are rewritten (inside CONTEXT, so edges are never half-read).
REWRITE = timedelta(days=1)


class Connector(Protocol):
    type: ClassVar[str]
    version: ClassVar[str]
    # File-fed connectors look for new files on every dispatch; API connectors fetch windows.
    polls: ClassVar[bool]
    # How long after an hour a source may still fill it in (a device back-filling after an
    # outage, a weather archive catching up); after that an incomplete hour is final.
    settle: ClassVar[timedelta]

    def fetch(
        self, storage: Storage, meter: Meter, window: HourWindow, now: datetime
    ) -> list[Payload]:
        """Everything new the source has for this meter as of `now` (a connector's only I/O)."""

    def parse(self, data: bytes, name: str, meter: Meter) -> SourceReadings:
        """Source readings from one payload; raise SourceDataError naming the line."""


@dataclass
class CollectResult:
    participant: str
    meter: str
    window: HourWindow
    payloads_new: int = 0
    hours_cached: int = 0
    hours_missing: int = 0
    changed: pd.DataFrame = field(default_factory=pd.DataFrame)
    rejected: list[str] = field(default_factory=list)
    deferred: str | None = None

    @property
    def hours_new(self) -> int:
        return len(self.changed)


def is_complete(hourly: pd.DataFrame) -> pd.Series:
    """An hour is complete when the source covered all of it with a usable value."""
    return (hourly["coverage"] >= 0.999) & (hourly["quality"] != "missing")


def complete_hours(storage: Storage, meter: Meter, window: HourWindow) -> pd.DatetimeIndex:
    stored = read_hours(storage, meter, window.days())
    done = stored.loc[is_complete(stored), "hour_utc"]
    return window.hours().intersection(pd.DatetimeIndex(done))


def made_with(meter: Meter, connector: Connector) -> str:
    """What a meter's hours are standardised with: its configuration and connector version."""
    return f"{meter.fingerprint}/{connector.type}-{connector.version}"


def window_key(
    participant: Participant, meter: Meter, connector: Connector, window: HourWindow
) -> str:
    """The cache key of a meter window: participant, meter, span, configuration, connector."""
    asked = json.dumps([participant.id, meter.id, str(window), made_with(meter, connector)])
    return hashlib.sha256(asked.encode()).hexdigest()[:16]


def collect_meter(
    storage: Storage,
    participant: Participant,
    meter: Meter,
    connector: Connector,
    window: HourWindow,
    now: datetime | None = None,
    force_override: bool | None = None,
) -> CollectResult:
    """Fetch what is new for `meter`, archive it, and upsert the hours it changes.

    Unreadable or implausible payloads are archived, copied to `quarantine/` with a reason, and
    reported in `rejected`; the rest of the meter's data still goes through (meterflow.intake).
    If the meter's configuration (or its connector's version) changed since its hours were
    standardised, the whole archive of that meter is standardised again, so a fixed unit or
    channel takes effect at once. Hours the source had a fair chance to fill are recorded as
    settled (meterflow.meter_state): the dispatch does not fetch them again.

    `force_override` is for explicit reruns: True fetches the window again and rewrites its
    hours (a changed payload is archived beside the previous one, never over it); False makes
    no source call and rebuilds the window's hours from the archive, unless they are all
    complete and were made with the current configuration (then it does nothing at all); None is
    the dispatch's normal incremental collection.
    """
    now = now or datetime.now(UTC)
    result = CollectResult(participant.id, meter.id, window)
    result.hours_cached = len(complete_hours(storage, meter, window))
    current = made_with(meter, connector)
    state = read_state(storage, meter)
    stored_state = MeterState(state.made_with, list(state.settled))
    finished = result.hours_cached == len(window.hours()) and state.made_with == current
    if force_override is False and finished:
        return result
    origin = "archive" if force_override is False else "source"
    fetch = f"{origin}@{now:%Y-%m-%dT%H:%M:%SZ}/{window_key(participant, meter, connector, window)}"
    log = RawLog(storage, meter.id)
    fetched = force_override is not False
    try:
        payloads = connector.fetch(storage, meter, window, now) if fetched else []
    except SourceDeferred as exc:
        result.deferred, payloads, fetched = str(exc), [], False
    spans = [
        span
        for payload in payloads
        if (span := _take(storage, log, connector, payload, meter, now, result))
    ]
    if state.made_with != current:
        spans = [ref.span for ref in log.refs if ref.span] or spans
    elif force_override is not None:
        spans += [ref.span for ref in log.overlapping(window.start, window.end)]
    if spans:
        start = min(s[0] for s in spans) - REWRITE
        end = max(s[1] for s in spans) + REWRITE
        hourly = _standardise_archive(
            storage, log, meter, connector, start - CONTEXT, end + CONTEXT, result
        )
        inside = (hourly["hour_utc"] >= start) & (hourly["hour_utc"] < end)
        result.changed = upsert_hours(storage, meter, hourly[inside], fetch, current)
    stored = read_hours(storage, meter, window.days())
    stored = stored[(stored["hour_utc"] >= window.start) & (stored["hour_utc"] < window.end)]
    if (
        fetched
        and not connector.polls
        and (final := _settled(window, stored, now, connector.settle))
    ):
        state.settle(final)
    if spans or not log.refs:
        state.made_with = current
    if state != stored_state:
        write_state(storage, meter, state)
    result.hours_missing = len(window.hours()) - int(is_complete(stored).sum())
    return result


def _take(storage, log, connector, payload: Payload, meter: Meter, now, result) -> tuple | None:
    """Archive one payload (or quarantine it); the span of its new data, if any."""
    if payload.refused:  # judged by its entry (a link, a bad name), not by its bytes
        if storage.exists(quarantine_key(meter.id, payload)):
            consume(storage, payload)
        else:
            _reject(storage, None, meter, payload, SourceDataError(payload.refused), now, result)
        return None
    if log.has(payload):
        consume(storage, payload)
        return None
    try:
        accepted = accept(storage, log, connector, payload, meter, now)
    except SourceDataError as exc:
        _reject(storage, log, meter, payload, exc, now, result)
        return None
    if accepted is None:  # the raw log holds every record of it already
        consume(storage, payload)
        return None
    span = accepted.readings.span()
    log.add(accepted.payload, span, now, records_fetched=accepted.records_fetched)
    consume(storage, payload)
    result.payloads_new += 1
    return span


def _reject(storage, log, meter, payload, exc: SourceDataError, now, result) -> None:
    """Quarantine a payload with its reason (and archive it as rejected, when its bytes were
    judged: the same bytes are then not judged again)."""
    error = exc.located(participant=result.participant, meter=meter.id, file=payload.source)
    if log is not None:
        log.add(payload, None, now, error=str(error))
    quarantine(storage, meter.id, payload, str(error))
    result.rejected.append(str(error))


def _settled(
    window: HourWindow, stored: pd.DataFrame, now: datetime, settle: timedelta
) -> HourWindow | None:
    """The hours of a fetched window that are final: those ending at least `settle` before
    both now and the end of the last hour the source had data for (a device still in an
    outage may back-fill all of it when it returns)."""
    covered = stored.loc[stored["coverage"] > 0, "hour_utc"]
    if covered.empty:
        return None
    alive = min(now, covered.max().to_pydatetime() + HOUR)
    end = min(window.end, floor_hour(alive - settle))
    return HourWindow(window.start, end) if end > window.start else None


def _standardise_archive(storage, log, meter, connector, start, end, result) -> pd.DataFrame:
    """Hourly readings from the archived payloads overlapping [start, end); one that the
    meter's current configuration cannot read is left out and reported, never fatal."""
    parsed = []
    for ref in log.overlapping(start, end):
        try:
            parsed.append(connector.parse(storage.read(ref.key), ref.name, meter))
        except SourceDataError as exc:
            result.rejected.append(f"{ref.key} (archived): {exc}")
    return standardise_meter(parsed, meter) if parsed else empty_hourly()


def standardise_meter(parsed: list[SourceReadings], meter: Meter) -> pd.DataFrame:
    """Hourly readings of a meter from its parsed payloads, oldest first (later ones win)."""
    # Each payload has its own unit (one push file in Wh, the next in kWh).
    frames = [p.frame.assign(value=to_standard(p.frame["value"], p.unit)) for p in parsed]
    readings = SourceReadings(
        parsed[0].kind, standard_unit(parsed[0].unit), pd.concat(frames, ignore_index=True)
    )
    settings = meter.connector
    register_max = getattr(settings, "register_max", None)  # in the source unit
    return standardise(
        readings,
        meter.data_type,
        register_max=None
        if register_max is None
        else float(to_standard(register_max, parsed[0].unit)),
        max_gap_minutes=getattr(settings, "max_gap_minutes", None),
    )
