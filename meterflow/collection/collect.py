"""Collect meter windows: fetch -> intake -> standardise hourly -> one raw run, no Prefect.

A collection runs for a shard of meters and archives everything it fetched as one run object
(meterflow.collection.rawlog); `merge` then upserts the hours the runs made into the day files
and records them in the catalog. A flow runs shards in parallel and merges them itself (it is the
one writer of the participant's catalog and day files); `collect_meters` does both in one call.

The connector is passed in (connectors depend on the core, never the reverse). A connector's
`fetch` is its only I/O; `parse` is pure, so the archive can be re-standardised at any time.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Protocol

import pandas as pd

from meterflow.collection.batch import Collection, Work, standardise_many
from meterflow.collection.catalog import (
    INDEX_SCHEMA,
    Catalog,
    MeterState,
    index_rows,
    read_catalog,
    write_catalog,
)
from meterflow.collection.intake import consume
from meterflow.collection.rawlog import PREFIX, Payload, RunWriter, read_run
from meterflow.common.frames import from_arrow
from meterflow.common.storage import Storage
from meterflow.common.timeutil import HOUR, HourWindow
from meterflow.configuration.config import Meter, Participant
from meterflow.hours.hourly_store import DAY_COLUMNS, empty_day, read_day, upsert_day
from meterflow.standardisation.readings import SourceReadings, empty_hourly

# How long the catalog remembers a merged run (and so can load it if a flow lost its load).
RUNS_KEPT = timedelta(days=62)
# A merge holds at most about this many of its runs' meter-hours before writing the days they
# touch: a month of a participant of 10,000 meters is 7.2 million (2 GiB held at once).
MERGE_ROWS = 500_000


class Connector(Protocol):
    type: ClassVar[str]
    version: ClassVar[str]
    # File-fed connectors look for new files on every dispatch; API connectors fetch windows.
    polls: ClassVar[bool]
    # How long after an hour a source may still fill it in (a device back-filling after an
    # outage, a weather archive catching up); after that an incomplete hour is final.
    settle: ClassVar[timedelta]
    # Meter health (meterflow.jobs.health): how far behind its data normally is, and how long
    # without new data makes a meter silent.
    latency: ClassVar[timedelta]
    silent_after: ClassVar[timedelta]

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


def made_with(meter: Meter, connector: Connector) -> str:
    """What a meter's hours are standardised with: its configuration and connector version."""
    return f"{meter.fingerprint}/{connector.type}-{connector.version}"


def window_key(
    participant: Participant, meter: Meter, connector: Connector, window: HourWindow
) -> str:
    """The cache key of a meter window: participant, meter, span, configuration, connector."""
    asked = json.dumps([participant.id, meter.id, str(window), made_with(meter, connector)])
    return hashlib.sha256(asked.encode()).hexdigest()[:16]


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
    chance to fill are recorded as settled: they are not fetched again. The work is done in
    batches across the shard's meters (meterflow.collection.batch).

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
    collection = Collection(storage, participant, catalog, run, now, force_override)
    results, works = [], []
    for mw in planned:
        meter = participant.meter(mw.meter_id)
        result = CollectResult(participant.id, meter.id, mw.window)
        results.append(result)
        consumed, sources = len(collection.consumed), dict(collection.sources)
        try:
            work = _prepare(collection, meter, connector_of(meter), mw.window, result)
            if work is not None:
                collection.start(work)
                works.append(work)
        except Exception as exc:  # its block or its source: this meter fails alone
            del collection.consumed[consumed:]
            collection.sources = sources
            result.error = exc
            result.hours_cached = len(
                collection.days.complete(meter, mw.window.start, mw.window.end)
            )
    collection.intake(works)
    for work in works:
        collection.scope(work)
    collection.standardise(works)
    collection.finish(works)
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


def _prepare(collection: Collection, meter, connector, window, result) -> Work | None:
    """What collecting the meter's window starts from; None if there is nothing to do (a
    finished window rebuilt from the archive)."""
    stored = collection.days.meter_hours(meter, window.start, window.end)
    result.hours_cached = len(collection.days.complete(meter, window.start, window.end))
    current = made_with(meter, connector)
    state = collection.catalog.meters.get(meter.id, MeterState())
    finished = result.hours_cached == len(window.hours()) and state.made_with == current
    if collection.force is False and finished:
        return None
    origin = "archive" if collection.force is False else "source"
    key = window_key(collection.participant, meter, connector, window)
    return Work(
        meter=meter,
        connector=connector,
        window=window,
        result=result,
        current=current,
        fetch=f"{origin}@{collection.now:%Y-%m-%dT%H:%M:%SZ}/{key}",
        state=state,
        new_state=MeterState(state.made_with, list(state.settled)),
        stored=stored,
    )


def merge(storage: Storage, participant: Participant, run_keys: list[str], now: datetime) -> int:
    """Upsert the hours of collection runs into the day files and record the runs in the
    catalog; runs already merged are skipped. How many meter-hours changed.

    Each run's hours are split by day as they are read, and the days are written whenever
    MERGE_ROWS meter-hours are held, so that a large participant's month is never held whole. A
    meter-hour that two runs give (a run a lost flow left, and its rerun) takes the later's."""
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
    fresh_of: dict[tuple[str, str], list[pd.DataFrame]] = defaultdict(list)
    held = changed = 0
    for key in dict.fromkeys(run_keys):
        if key in merged:
            continue
        run = read_run(storage, key, data=False)
        run_id = run.manifest["run"]
        seq = after.next_seq
        index = from_arrow(run.payloads)
        index = index.assign(run_key=key, row=range(len(index)), seq=seq)
        readmitted = index_rows(run.manifest.get("readmitted", []))
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
            data_types = run.hours["meter_id"].map(run.manifest["data_types"])
            for (data_type, midnight), fresh in run.hours[DAY_COLUMNS].groupby(
                [data_types, run.hours["hour_utc"].dt.floor("D")]  # not strftime: 15 ms a run
            ):
                fresh_of[(data_type, f"{midnight:%Y-%m-%d}")].append(fresh)
            held += len(run.hours)
            if held >= MERGE_ROWS:
                changed, held = changed + _write_days(storage, fresh_of), 0
        after.runs.append(
            {"run": run_id, "key": key, "seq": seq, "changed": span, "merged": now.isoformat()}
        )
    kept = now - RUNS_KEPT
    after.runs = [r for r in after.runs if datetime.fromisoformat(r["merged"]) >= kept]
    changed += _write_days(storage, fresh_of)
    after.payloads = after.payloads.reindex(columns=INDEX_SCHEMA.names)
    write_catalog(storage, before, after, now)
    return changed


def _write_days(storage: Storage, fresh_of: dict[tuple[str, str], list[pd.DataFrame]]) -> int:
    """Upsert the hours gathered per (data type, day) into the day files, letting each go once
    written; how many meter-hours changed."""
    changed = 0
    for data_type, day in sorted(fresh_of):
        parts = fresh_of.pop((data_type, day))
        fresh = pd.concat(parts, ignore_index=True)
        if len(parts) > 1:  # runs in order: a meter-hour given twice takes the later's
            fresh = fresh.drop_duplicates(["meter_id", "hour_utc"], keep="last")
        existing = read_day(storage, data_type, day)
        changed += len(upsert_day(storage, data_type, day, fresh, existing))
    return changed


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
    return standardise_many([(meter, parsed)]).get(meter.id, empty_hourly())


def _state_json(state: MeterState) -> dict:
    return {
        "made_with": state.made_with,
        "settled": [[w.start.isoformat(), w.end.isoformat()] for w in state.settled],
    }
