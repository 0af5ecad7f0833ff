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
from meterflow.rawlog import Payload, RawLog
from meterflow.readings import SourceReadings
from meterflow.standardise import standardise
from meterflow.storage import Storage
from meterflow.timeutil import HourWindow

# Payloads around new data that are re-read so that registers difference across file borders.
CONTEXT = timedelta(days=2)
# Hours around new data that are rewritten (inside CONTEXT, so edges are never half-read).
REWRITE = timedelta(days=1)


class Connector(Protocol):
    type: ClassVar[str]
    version: ClassVar[str]
    # File-fed connectors look for new files on every dispatch; API connectors fetch windows.
    polls: ClassVar[bool]
    # Recent hours a source may still fill in (e.g. a device back-filling after an outage).
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
    return hashlib.sha256(asked).hexdigest()[:16]


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

    Unreadable payloads are archived, copied to `quarantine/` with a reason, and reported in
    `rejected`; the rest of the meter's data still goes through. If the meter's configuration
    (or its connector's version) changed since its hours were standardised, the whole archive
    of that meter is standardised again, so a fixed unit or channel takes effect at once.

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
    finished = result.hours_cached == len(window.hours()) and _ledger(storage, meter) == current
    if force_override is False and finished:
        return result
    origin = "archive" if force_override is False else "source"
    fetch = f"{origin}@{now:%Y-%m-%dT%H:%M:%SZ}/{window_key(participant, meter, connector, window)}"
    log = RawLog(storage, meter.id)
    spans = []
    try:
        payloads = [] if force_override is False else connector.fetch(storage, meter, window, now)
    except SourceDeferred as exc:
        result.deferred = str(exc)
        payloads = []
    for payload in payloads:
        if log.has(payload):
            _consume(storage, payload)
            continue
        try:
            readings = connector.parse(payload.data, payload.name, meter)
        except SourceDataError as exc:
            error = exc.located(participant=participant.id, meter=meter.id, file=payload.source)
            log.add(payload, None, now, error=str(error))
            quarantine(storage, meter.id, payload, str(error))
            result.rejected.append(str(error))
            continue
        span = _span(readings)
        log.add(payload, span, now)
        _consume(storage, payload)
        result.payloads_new += 1
        if span:
            spans.append(span)
    if _ledger(storage, meter) != current:
        spans = [ref.span for ref in log.refs if ref.span] or spans
    elif force_override is not None:
        spans += [ref.span for ref in log.overlapping(window.start, window.end)]
    if spans:
        start = min(s[0] for s in spans) - REWRITE
        end = max(s[1] for s in spans) + REWRITE
        hourly = _standardise_archive(
            storage, log, meter, connector, start - CONTEXT, end + CONTEXT
        )
        inside = (hourly["hour_utc"] >= start) & (hourly["hour_utc"] < end)
        result.changed = upsert_hours(storage, meter, hourly[inside], fetch, current)
    if spans or not log.refs:
        storage.write(_ledger_key(meter), json.dumps({"made_with": current}).encode())
    result.hours_missing = len(window.hours()) - len(complete_hours(storage, meter, window))
    return result


def _ledger_key(meter: Meter) -> str:
    return f"ledger/{meter.id}.json"


def _ledger(storage: Storage, meter: Meter) -> str | None:
    """The configuration the meter's stored hours were standardised with."""
    key = _ledger_key(meter)
    return json.loads(storage.read(key))["made_with"] if storage.exists(key) else None


def _standardise_archive(storage, log, meter, connector, start, end) -> pd.DataFrame:
    parsed = [
        connector.parse(storage.read(ref.key), ref.name, meter)
        for ref in log.overlapping(start, end)
    ]
    return standardise_meter(parsed, meter)


def standardise_meter(parsed: list[SourceReadings], meter: Meter) -> pd.DataFrame:
    """Hourly readings of a meter from its parsed payloads, oldest first (later ones win)."""
    readings = SourceReadings(
        parsed[0].kind, parsed[0].unit, pd.concat([p.frame for p in parsed], ignore_index=True)
    )
    settings = meter.connector
    return standardise(
        readings,
        meter.data_type,
        register_max=getattr(settings, "register_max", None),
        max_gap_minutes=getattr(settings, "max_gap_minutes", None),
    )


def _span(readings: SourceReadings) -> tuple[datetime, datetime] | None:
    """The UTC span a payload's readings cover, widened to whole minutes."""
    frame = readings.frame
    if frame.empty:
        return None
    columns = {"interval": ("start", "end"), "hourly": ("hour_utc", "hour_utc")}
    first, last = columns.get(readings.kind, ("time", "time"))
    end = frame[last].max() + (
        pd.Timedelta(hours=1) if readings.kind == "hourly" else pd.Timedelta(0)
    )
    return (
        frame[first].min().floor("min").to_pydatetime(),
        end.ceil("min").to_pydatetime() + timedelta(minutes=1),
    )


def quarantine(storage: Storage, meter_id: str, payload: Payload, reason: str) -> str:
    """Keep rejected input beside a reason file, then take it out of the inbox."""
    key = f"quarantine/{meter_id}/{payload.sha[:16]}_{RawLog.safe_name(payload.name)}"
    storage.write(key, payload.data)
    storage.write(
        key + ".reason.json",
        json.dumps({"source": payload.source, "reason": reason}, indent=2).encode(),
    )
    _consume(storage, payload)
    return key


def _consume(storage: Storage, payload: Payload) -> None:
    if payload.consumed_key:
        storage.delete(payload.consumed_key)
