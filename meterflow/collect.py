"""Collect meter windows: fetch -> intake -> standardise hourly -> one raw run, no Prefect.

A collection runs for a shard of meters and archives everything it fetched as one run object
(meterflow.rawlog); `merge` then upserts the hours the runs made into the day files and records
them in the catalog. A flow runs shards in parallel and merges them itself (it is the one writer
of the participant's catalog and day files); `collect_meters` does both in one call.

The connector is passed in (connectors depend on the core, never the reverse). A connector's
`fetch` is its only I/O; `parse` is pure, so the archive can be re-standardised at any time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Protocol

import pandas as pd

from meterflow.catalog import (
    INDEX_SCHEMA,
    Catalog,
    MeterState,
    read_catalog,
    read_everything,
    write_catalog,
)
from meterflow.config import Meter, Participant
from meterflow.errors import SourceDataError
from meterflow.hourly_store import DAY_COLUMNS, changed_rows, empty_day, read_day, upsert_day
from meterflow.http import SourceDeferred
from meterflow.intake import accept, consume, quarantine, quarantine_key, read_payload
from meterflow.rawlog import PREFIX, Payload, RunReader, RunWriter, read_run
from meterflow.readings import HOURLY_COLUMNS, SourceReadings, empty_hourly
from meterflow.standardise import standardise
from meterflow.storage import Storage
from meterflow.timeutil import HOUR, HourWindow, floor_hour
from meterflow.units import standard_unit, to_standard

# Payloads around new data that are re-read so that registers difference across file borders.
CONTEXT = timedelta(days=2)
# Hours around new data that are rewritten (inside CONTEXT, so edges are never half-read).
REWRITE = timedelta(days=1)
# How long the catalog remembers a merged run (and so can load it if a flow lost its load).
RUNS_KEPT = timedelta(days=62)


class Connector(Protocol):
    type: ClassVar[str]
    version: ClassVar[str]
    # File-fed connectors look for new files on every dispatch; API connectors fetch windows.
    polls: ClassVar[bool]
    # How long after an hour a source may still fill it in (a device back-filling after an
    # outage, a weather archive catching up); after that an incomplete hour is final.
    settle: ClassVar[timedelta]

    def fetch(
        self,
        storage: Storage,
        meter: Meter,
        window: HourWindow,
        now: datetime,
        seen: dict[str, dict] | None = None,
    ) -> list[Payload]:
        """Everything new the source has for this meter as of `now` (a connector's only I/O);
        `seen` holds the export files already read (size, version), which need not be again."""

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
    error: BaseException | None = None  # the meter could not be collected

    @property
    def hours_new(self) -> int:
        return len(self.changed)


@dataclass(frozen=True)
class MeterWindow:
    meter_id: str
    window: HourWindow
    hours_pending: int


@dataclass
class ShardRun:
    """What collecting a shard did: one result per meter and the run object it wrote (None if
    nothing changed at all)."""

    results: list[CollectResult]
    run_key: str | None = None


def is_complete(hourly: pd.DataFrame) -> pd.Series:
    """An hour is complete when the source covered all of it with a usable value."""
    return (hourly["coverage"] >= 0.999) & (hourly["quality"] != "missing")


def made_with(meter: Meter, connector: Connector) -> str:
    """What a meter's hours are standardised with: its configuration and connector version."""
    return f"{meter.fingerprint}/{connector.type}-{connector.version}"


def window_key(
    participant: Participant, meter: Meter, connector: Connector, window: HourWindow
) -> str:
    """The cache key of a meter window: participant, meter, span, configuration, connector."""
    asked = json.dumps([participant.id, meter.id, str(window), made_with(meter, connector)])
    return hashlib.sha256(asked.encode()).hexdigest()[:16]


class Days:
    """The stored day files a collection reads, each read once (many meters share one)."""

    def __init__(self, storage: Storage):
        self.storage = storage
        self._days: dict[tuple[str, str], pd.DataFrame] = {}

    def rows(self, data_type: str, day: str) -> pd.DataFrame:
        if (data_type, day) not in self._days:
            self._days[(data_type, day)] = read_day(self.storage, data_type, day)
        return self._days[(data_type, day)]

    def meter_hours(self, meter: Meter, start: datetime, end: datetime) -> pd.DataFrame:
        days = HourWindow(floor_hour(start), floor_hour(end - timedelta(microseconds=1)) + HOUR)
        frames = [self.rows(meter.data_type, day) for day in days.days()]
        rows = pd.concat(frames, ignore_index=True) if frames else empty_day()
        inside = (rows["meter_id"] == meter.id) & (rows["hour_utc"] >= start)
        return rows[inside & (rows["hour_utc"] < end)]

    def forget(self, data_type: str, day: str) -> None:
        self._days.pop((data_type, day), None)


def collect_shard(
    storage: Storage,
    participant: Participant,
    planned: list[MeterWindow],
    connector_of: Callable[[Meter], Connector],
    now: datetime | None = None,
    force_override: bool | None = None,
    catalog: Catalog | None = None,
    label: str = "shard",
) -> ShardRun:
    """Collect a shard's meter windows and archive what they fetched as one run object.

    Unreadable or implausible payloads are archived as rejected, copied to `quarantine/` with
    a reason and reported in `rejected`; the rest of the meter's data still goes through. A
    meter whose configuration (or connector version) changed since its hours were standardised
    is standardised again from its whole archive, so a fixed unit or channel takes effect at
    once (payloads its old configuration refused are judged again). Hours the source had a fair
    chance to fill are recorded as settled: they are not fetched again.

    `force_override` is for explicit reruns: True fetches the window again and rewrites its
    hours (a changed payload is archived beside the previous one, never over it); False makes
    no source call and rebuilds the window's hours from the archive, unless they are all
    complete and were made with the current configuration (then it does nothing at all); None is
    the dispatch's normal incremental collection. Inbox files leave the inbox only once the run
    object holding them is written.
    """
    now = now or datetime.now(UTC)
    catalog = catalog or read_catalog(storage)
    run = RunWriter(datetime.now(UTC))
    collection = _Collection(storage, participant, catalog, run, now, force_override)
    results = [
        collection.safely(participant.meter(mw.meter_id), connector_of, mw.window) for mw in planned
    ]
    changed = [r.changed for r in results if not r.changed.empty]
    if not (run.rows or changed or collection.meter_states or collection.sources):
        return ShardRun(results)
    hours = pd.concat(changed, ignore_index=True) if changed else empty_day()
    manifest = {
        "label": label,
        "participant": participant.id,
        "at": now.isoformat(),
        "meters": {m: _state_json(s) for m, s in sorted(collection.meter_states.items())},
        "data_types": {mw.meter_id: participant.meter(mw.meter_id).data_type for mw in planned},
        "sources": collection.sources,
        "readmitted": collection.readmitted,
    }
    key = run.write(storage, hours[DAY_COLUMNS], manifest)
    for payload in collection.consumed:
        consume(storage, payload)
    return ShardRun(results, key)


class _Collection:
    """One shard's collection state: what it read, what it archives, what it learnt."""

    def __init__(self, storage, participant, catalog, run, now, force_override):
        self.storage, self.participant, self.catalog = storage, participant, catalog
        self.run, self.now, self.force = run, now, force_override
        self.days, self.reader = Days(storage), RunReader(storage)
        self.meter_states: dict[str, MeterState] = {}
        self.sources: dict[str, dict] = {}
        self.consumed: list[Payload] = []
        self.readmitted: list[dict] = []

    def safely(self, meter: Meter, connector_of, window: HourWindow) -> CollectResult:
        """Collect one meter; if anything fails (its block, its source), it fails alone, and
        nothing of its attempt is archived, consumed or recorded."""
        rows, consumed, sources = len(self.run.rows), len(self.consumed), dict(self.sources)
        readmitted = len(self.readmitted)
        try:
            return self.meter(meter, connector_of(meter), window)
        except Exception as exc:
            del self.run.rows[rows:], self.consumed[consumed:], self.readmitted[readmitted:]
            self.sources = sources
            self.meter_states.pop(meter.id, None)
            return CollectResult(self.participant.id, meter.id, window, error=exc)

    def meter(self, meter: Meter, connector: Connector, window: HourWindow) -> CollectResult:
        result = CollectResult(self.participant.id, meter.id, window)
        stored = self.days.meter_hours(meter, window.start, window.end)
        result.hours_cached = int(is_complete(stored).sum())
        current = made_with(meter, connector)
        state = self.catalog.meters.get(meter.id, MeterState())
        new_state = MeterState(state.made_with, list(state.settled))
        finished = result.hours_cached == len(window.hours()) and state.made_with == current
        if self.force is False and finished:
            return result
        origin = "archive" if self.force is False else "source"
        key = window_key(self.participant, meter, connector, window)
        fetch = f"{origin}@{self.now:%Y-%m-%dT%H:%M:%SZ}/{key}"
        fetched = self.force is not False
        try:
            seen = {k: v for k, v in self.catalog.sources.items() if v.get("made_with") == current}
            payloads = (
                connector.fetch(self.storage, meter, window, self.now, seen) if fetched else []
            )
        except SourceDeferred as exc:
            result.deferred, payloads, fetched = str(exc), [], False
        new = [t for p in payloads if (t := self._take(meter, connector, current, p, result))]
        spans = [readings.span() for _, readings in new if readings.span()]
        archive = self.catalog.payloads_of(meter.id)
        if state.made_with != current and not (archive.empty and self._rejected_of(meter).empty):
            self.catalog = read_everything(self.storage, self.catalog)
            self._readmit(meter, connector, current)
            archive = self.catalog.payloads_of(meter.id)
            spans += [(r.span_start, r.span_end) for r in archive.itertuples()]
        elif self.force is not None:
            overlapping = self.catalog.payloads_of(meter.id, window.start, window.end)
            spans += [(r.span_start, r.span_end) for r in overlapping.itertuples()]
        if spans:
            start = pd.Timestamp(min(s[0] for s in spans)) - REWRITE
            end = pd.Timestamp(max(s[1] for s in spans)) + REWRITE
            hourly = self._standardise(
                meter, connector, new, start - CONTEXT, end + CONTEXT, result
            )
            inside = hourly[(hourly["hour_utc"] >= start) & (hourly["hour_utc"] < end)]
            fresh = inside.assign(meter_id=meter.id, fetch=fetch, made_with=current)
            existing = self.days.meter_hours(meter, start.to_pydatetime(), end.to_pydatetime())
            result.changed = changed_rows(existing, fresh[DAY_COLUMNS])
        now_stored = _overlay(stored, result.changed, window)
        if fetched and not connector.polls:
            final = _settled(window, now_stored, self.now, connector.settle)
            if final is not None:
                new_state.settle(final)
        if spans or archive.empty:
            new_state.made_with = current
        if new_state != state:
            self.meter_states[meter.id] = new_state
        result.hours_missing = len(window.hours()) - int(is_complete(now_stored).sum())
        return result

    def _take(self, meter, connector, current, payload: Payload, result):
        """Archive one payload in the run (or quarantine it): (payload, readings) if it brought
        anything new."""
        if payload.seen is not None:
            self.sources[payload.source] = {
                **payload.seen,
                "sha256": payload.sha,
                "made_with": current,
            }
        if payload.refused:  # judged by its entry (a link, a bad name), not by its bytes
            if self.storage.exists(quarantine_key(meter.id, payload)):
                self.consumed.append(payload)
            else:
                self._reject(meter, payload, SourceDataError(payload.refused), result, None)
            return None
        if self._known(meter.id, payload.sha, current):
            self.consumed.append(payload)
            return None
        try:
            accepted = accept(self.reader, self.catalog, connector, payload, meter, self.now)
        except SourceDataError as exc:
            self._reject(meter, payload, exc, result, current)
            return None
        if accepted is None:  # the raw log holds every record of it already
            self.consumed.append(payload)
            return None
        span = accepted.readings.span()
        self.run.add(
            meter.id,
            accepted.payload,
            span,
            self.now,
            current,
            records_fetched=accepted.records_fetched,
        )
        self.consumed.append(payload)
        result.payloads_new += 1
        return accepted.payload, accepted.readings

    def _known(self, meter_id: str, sha256: str, current: str) -> bool:
        """Archived already: accepted, or refused under the same configuration."""
        p = self.catalog.payloads
        mine = p[(p["meter_id"] == meter_id) & (p["sha256"] == sha256)]
        run = [r for r in self.run.rows if r["meter_id"] == meter_id and r["sha256"] == sha256]
        return bool(((mine["status"] == "accepted") | (mine["made_with"] == current)).any() or run)

    def _reject(self, meter, payload, exc: SourceDataError, result, current) -> None:
        """Quarantine a payload with its reason, and archive it as rejected when its bytes
        were judged (the same bytes are not judged again under the same configuration)."""
        error = exc.located(participant=self.participant.id, meter=meter.id, file=payload.source)
        if current is not None:
            self.run.add(meter.id, payload, None, self.now, current, error=str(error))
        quarantine(self.storage, meter.id, payload, str(error))
        result.rejected.append(str(error))
        self.consumed.append(payload)

    def _rejected_of(self, meter: Meter) -> pd.DataFrame:
        p = self.catalog.payloads
        return p[(p["meter_id"] == meter.id) & (p["status"] == "rejected")]

    def _readmit(self, meter: Meter, connector, current: str) -> None:
        """Payloads the meter's earlier configuration refused, judged again by the new one: those
        it accepts join the archive (the run object keeps its record of the refusal)."""
        for row in self._rejected_of(meter).itertuples():
            payload = Payload(row.name, self.reader.data(row.run_key, row.row), row.source)
            try:
                readings = read_payload(connector, payload, meter)
            except SourceDataError:
                continue
            span = readings.span()
            if span is None:
                continue
            entry = {**row._asdict(), "status": "accepted", "error": None, "made_with": current}
            entry.update(span_start=pd.Timestamp(span[0]), span_end=pd.Timestamp(span[1]))
            entry.pop("Index", None)
            self.readmitted.append(entry)
            self.catalog.payloads = pd.concat(
                [self.catalog.payloads, pd.DataFrame([entry])], ignore_index=True
            )

    def _standardise(self, meter, connector, new, start, end, result) -> pd.DataFrame:
        """Hourly readings from the archived payloads overlapping [start, end) and this run's
        new ones (later ones win); an archived one the current configuration cannot read is
        left out and reported, never fatal."""
        parsed = []
        for row in self.catalog.payloads_of(meter.id, start, end).itertuples():
            payload = Payload(row.name, self.reader.data(row.run_key, row.row), row.source)
            try:
                parsed.append(read_payload(connector, payload, meter))
            except SourceDataError as exc:
                result.rejected.append(f"{row.source} (archived): {exc}")
        parsed += [readings for _, readings in new]
        return standardise_meter(parsed, meter) if parsed else empty_hourly()


def merge(storage: Storage, participant: Participant, run_keys: list[str], now: datetime) -> dict:
    """Upsert the hours of collection runs into the day files and record the runs in the
    catalog; runs already merged are skipped. The changed rows per meter, for loading."""
    before = read_catalog(storage)
    after = Catalog(
        {m: MeterState(s.made_with, list(s.settled)) for m, s in before.meters.items()},
        dict(before.sources),
        list(before.runs),
        before.payloads.copy(),
        before.months,
        before.complete,
    )
    merged = {run["key"] for run in after.runs}
    changed: dict[str, list[pd.DataFrame]] = {}
    hours = []
    for key in dict.fromkeys(run_keys):
        if key in merged:
            continue
        run = read_run(storage, key)
        run_id = run.manifest["run"]
        seq = after.next_seq
        index = run.payloads.drop_columns(["data"]).to_pandas()
        index = index.assign(run_key=key, row=range(len(index)), seq=seq)
        readmitted = pd.DataFrame(run.manifest.get("readmitted", []))
        more = [f for f in (index, readmitted) if not f.empty]
        if more:
            after.payloads = pd.concat([after.payloads, *more], ignore_index=True)
        for meter_id, state in run.manifest["meters"].items():
            after.meters[meter_id] = MeterState(
                state["made_with"], [HourWindow.parse(a, b) for a, b in state["settled"]]
            )
        after.sources.update(run.manifest["sources"])
        span = None
        if not run.hours.empty:
            span = [
                run.hours["hour_utc"].min().isoformat(),
                (run.hours["hour_utc"].max() + HOUR).isoformat(),
            ]
            hours.append(
                run.hours.assign(data_type=run.hours["meter_id"].map(run.manifest["data_types"]))
            )
        after.runs.append(
            {"run": run_id, "key": key, "seq": seq, "changed": span, "merged": now.isoformat()}
        )
    kept = now - RUNS_KEPT
    after.runs = [r for r in after.runs if datetime.fromisoformat(r["merged"]) >= kept]
    if hours:
        rows = pd.concat(hours, ignore_index=True)
        for (data_type, day), fresh in rows.groupby(
            ["data_type", rows["hour_utc"].dt.strftime("%Y-%m-%d")]
        ):
            existing = read_day(storage, data_type, day)
            done = upsert_day(storage, data_type, day, fresh[DAY_COLUMNS], existing)
            for meter_id, meter_rows in done.groupby("meter_id"):
                changed.setdefault(meter_id, []).append(meter_rows[HOURLY_COLUMNS])
    after.payloads = after.payloads.reindex(columns=INDEX_SCHEMA.names)
    write_catalog(storage, before, after, now)
    return {m: pd.concat(f, ignore_index=True) for m, f in changed.items()}


def unmerged(storage: Storage, now: datetime) -> list[str]:
    """Run objects written yesterday or today: those a flow lost before merging them are among
    them (merge skips the others without reading them)."""
    days = (now - timedelta(days=1), now)
    return [key for day in days for key in storage.list(f"{PREFIX}{day:%Y/%m/%d}/")]


def collect_meters(
    storage: Storage,
    participant: Participant,
    planned: list[MeterWindow],
    connector_of: Callable[[Meter], Connector],
    now: datetime | None = None,
    force_override: bool | None = None,
) -> list[CollectResult]:
    """Collect the meter windows as one shard and merge it: what a flow does, in one call."""
    now = now or datetime.now(UTC)
    shard = collect_shard(storage, participant, planned, connector_of, now, force_override)
    if shard.run_key:
        merge(storage, participant, [shard.run_key], now)
    return shard.results


def collect_meter(
    storage: Storage,
    participant: Participant,
    meter: Meter,
    connector: Connector,
    window: HourWindow,
    now: datetime | None = None,
    force_override: bool | None = None,
) -> CollectResult:
    """Collect one meter's window (see collect_shard) and store its hours; a source that fails
    raises, as there is no other meter to go on with."""
    planned = [MeterWindow(meter.id, window, len(window.hours()))]
    (result,) = collect_meters(
        storage, participant, planned, lambda _: connector, now, force_override
    )
    if result.error is not None:
        raise result.error
    return result


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


def _overlay(stored: pd.DataFrame, changed: pd.DataFrame, window: HourWindow) -> pd.DataFrame:
    """The window's stored hours with the changed ones in their place."""
    if changed.empty:
        return stored
    inside = changed[(changed["hour_utc"] >= window.start) & (changed["hour_utc"] < window.end)]
    kept = stored[~stored["hour_utc"].isin(inside["hour_utc"])]
    return pd.concat([kept, inside], ignore_index=True)


def _settled(
    window: HourWindow, stored: pd.DataFrame, now: datetime, settle: timedelta
) -> HourWindow | None:
    """The hours of a fetched window that are final: those ending at least `settle` before
    both now and the end of the last hour the source had data for (a device still in an
    outage may back-fill all of it when it returns)."""
    covered = stored.loc[stored["coverage"] > 0, "hour_utc"]
    covered = covered[(covered >= window.start) & (covered < window.end)]
    if covered.empty:
        return None
    alive = min(now, covered.max().to_pydatetime() + HOUR)
    end = min(window.end, floor_hour(alive - settle))
    return HourWindow(window.start, end) if end > window.start else None


def _state_json(state: MeterState) -> dict:
    return {
        "made_with": state.made_with,
        "settled": [[w.start.isoformat(), w.end.isoformat()] for w in state.settled],
    }
