"""A shard's collection, in batches across its meters: payloads are fetched meter by meter (the
only I/O per meter), then parsed, checked and standardised together: each raw object is parsed
once, files of one format in one vectorised pass, interval and hourly readings of every meter
standardised in one pass grouped by meter, and the changed hours found in one comparison.

What one meter's trouble does stays with that meter: a block or source that fails fails the
meter alone, and nothing of its attempt is archived or consumed; a payload that cannot be read
or is not plausible is quarantined and the meter's other payloads go on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from meterflow.collection.catalog import Catalog, MeterState, read_everything
from meterflow.collection.intake import new_records, quarantine, quarantine_key, read_payload
from meterflow.collection.rawlog import Payload, RunReader, RunWriter
from meterflow.common.errors import SourceDataError
from meterflow.common.http import SourceDeferred
from meterflow.common.memory import release_memory
from meterflow.common.storage import Storage
from meterflow.common.timeutil import HOUR, HourWindow, floor_hour
from meterflow.configuration.config import Meter, Participant
from meterflow.hours.hourly_store import DAY_COLUMNS, changed_rows, empty_day, read_day
from meterflow.standardisation.plausibility import check_batch, check_readings
from meterflow.standardisation.readings import SourceReadings, empty_hourly, nanoseconds
from meterflow.standardisation.standardise import MeterSettings, standardise_meters
from meterflow.standardisation.units import standard_unit, to_standard

# Payloads around new data that are re-read so that registers difference across file borders.
CONTEXT = timedelta(days=2)
# Hours around new data that are rewritten (inside CONTEXT, so edges are never half-read).
REWRITE = timedelta(days=1)
# Readings that make only the hours they overlap (interval energy is apportioned pro rata,
# hourly values pass through): new ones rewrite those hours alone, from the payloads that
# overlap them. Registers and samples reach across their neighbours: they take the margins.
LOCAL_KINDS = frozenset({"interval", "hourly"})
SPAN_SLACK = pd.Timedelta(minutes=1)  # SourceReadings.span widens the end by this


class Days:
    """The stored day files a collection reads: each read once, and the rows of a span split
    by meter once, however many meters ask."""

    def __init__(self, storage: Storage):
        self.storage = storage
        self._days: dict[tuple[str, str], pd.DataFrame] = {}
        self._spans: dict[tuple, dict[str, pd.DataFrame]] = {}

    def meter_hours(self, meter: Meter, start: datetime, end: datetime) -> pd.DataFrame:
        key = (meter.data_type, pd.Timestamp(start), pd.Timestamp(end))
        if key not in self._spans:
            rows = self._range(meter.data_type, start, end)
            self._spans[key] = dict(tuple(rows.groupby("meter_id", sort=False)))
        return self._spans[key].get(meter.id, _EMPTY_DAY)

    def complete(
        self, meter: Meter, start: datetime, end: datetime, estimates: bool = True
    ) -> np.ndarray:
        """The meter's complete hours in [start, end), as int64 nanoseconds (computed for every
        meter of the span at once); `estimates=False`: an estimated hour is not complete yet
        (its source revises estimates)."""
        key = ("complete", meter.data_type, pd.Timestamp(start), pd.Timestamp(end), estimates)
        if key not in self._spans:
            rows = self._range(meter.data_type, start, end)
            rows = rows[is_complete(rows) & (estimates | (rows["quality"] != "estimated"))]
            hours = pd.Series(nanoseconds(rows["hour_utc"]), index=rows["meter_id"].to_numpy())
            self._spans[key] = {m: h.to_numpy() for m, h in hours.groupby(level=0, sort=False)}
        return self._spans[key].get(meter.id, _NO_HOURS)

    def rows(self, ranges: pd.DataFrame) -> pd.DataFrame:
        """Every stored row of the data types and days the ranges (data_type, start, end)
        touch, of any meter."""
        frames = [
            self._range(data_type, group["start"].min(), group["end"].max())
            for data_type, group in ranges.groupby("data_type")
        ]
        return pd.concat(frames, ignore_index=True) if frames else empty_day()

    def _range(self, data_type: str, start, end) -> pd.DataFrame:
        span = HourWindow(floor_hour(start), floor_hour(end - timedelta(microseconds=1)) + HOUR)
        frames = [self._day(data_type, day) for day in span.days()]
        rows = pd.concat(frames, ignore_index=True) if frames else empty_day()
        return rows[(rows["hour_utc"] >= start) & (rows["hour_utc"] < end)]

    def _day(self, data_type: str, day: str) -> pd.DataFrame:
        if (data_type, day) not in self._days:
            self._days[(data_type, day)] = read_day(self.storage, data_type, day)
        return self._days[(data_type, day)]


_EMPTY_DAY = empty_day()
_NO_HOURS = np.array([], dtype="int64")


@dataclass
class Work:
    """One meter's window in a shard's collection, from fetch to hours."""

    meter: Meter
    connector: object
    window: HourWindow
    result: object  # CollectResult
    current: str
    fetch: str
    state: MeterState
    new_state: MeterState
    stored: pd.DataFrame
    fetched: bool = False
    payloads: list[Payload] = field(default_factory=list)
    spans: list[tuple] = field(default_factory=list)
    rows: int = 0  # run rows before this meter's, to take back if it fails
    consumed: int = 0
    local: bool = True  # every span is of LOCAL_KINDS readings: no margins around them


class Collection:
    """One shard's collection state: what it read, what it archives, what it learnt."""

    def __init__(
        self,
        storage,
        participant: Participant,
        catalog: Catalog,
        run: RunWriter,
        now,
        force_override,
    ):
        self.storage, self.participant, self.catalog = storage, participant, catalog
        self.run, self.now, self.force = run, now, force_override
        self.days, self.reader = Days(storage), RunReader(storage)
        self.meter_states: dict[str, MeterState] = {}
        self.sources: dict[str, dict] = {}
        self.consumed: list[Payload] = []
        self.readmitted: list[dict] = []
        self.new: list[Readings] = []  # this run's readings, with their meters, in order
        self.changed = empty_day()  # the hours this run changed, every meter's
        self._known = self._known_payloads()
        # The sources each configuration has read, found once per shard, not once per meter.
        self._sources_by_config: dict[str, dict[str, dict]] = {}
        for source, seen in catalog.sources.items():
            self._sources_by_config.setdefault(seen.get("made_with"), {})[source] = seen

    def _known_payloads(self) -> set[tuple]:
        p = self.catalog.payloads
        accepted = p[p["status"] == "accepted"]
        refused = p[p["status"] != "accepted"]
        return {(m, s) for m, s in zip(accepted["meter_id"], accepted["sha256"], strict=True)} | {
            (m, s, w)
            for m, s, w in zip(
                refused["meter_id"], refused["sha256"], refused["made_with"], strict=True
            )
        }

    def known(self, meter_id: str, sha256: str, current: str) -> bool:
        """Archived already: accepted, or refused under the same configuration."""
        return (meter_id, sha256) in self._known or (meter_id, sha256, current) in self._known

    # 1. fetch, meter by meter
    def start(self, work: Work) -> None:
        """Fetch the meter's payloads; settle refused and known ones at once."""
        work.rows, work.consumed = len(self.run.rows), len(self.consumed)
        work.fetched = self.force is not False
        if not work.fetched:
            return
        seen = self._sources_by_config.get(work.current, {})
        try:
            payloads = work.connector.fetch(self.storage, work.meter, work.window, self.now, seen)
        except SourceDeferred as exc:
            work.result.deferred, work.fetched, payloads = str(exc), False, []
        picked: dict[str, Payload] = {}
        for payload in payloads:
            if payload.seen is not None:
                self.sources[payload.source] = {
                    **payload.seen,
                    "sha256": payload.sha,
                    "made_with": work.current,
                }
            if payload.refused:  # judged by its entry (a link, a bad name), not by its bytes
                if self.storage.exists(quarantine_key(work.meter.id, payload)):
                    self.consumed.append(payload)
                else:
                    self.reject(work, payload, SourceDataError(payload.refused), judged=False)
            elif self.known(work.meter.id, payload.sha, work.current) or payload.sha in picked:
                self.consumed.append(payload)
            else:
                picked[payload.sha] = payload
        work.payloads = list(picked.values())

    # 2. parse and check, every meter's new payloads together
    def intake(self, works: list[Work]) -> None:
        items = [(w, p) for w in works for p in w.payloads]
        groups, errors = parse_all([(w.meter, w.connector, p) for w, p in items], self.storage)
        meters = [w.meter for w, _ in items]
        kept = []
        for group in groups:
            found = check_batch(group.kind, group.unit, group.frame, meters, self.now)
            errors.update(found)
            kept.append(group.without(found))
        spans = {i: span for group in kept for i, span in group.spans().items()}
        kinds = {i: group.kind for group in kept for i in group.payloads()}
        readings = {i: group for group in kept for i in group.payloads()}
        replaced: dict[int, Parsed] = {}  # payloads cut down to their new records
        dropped = set(errors)
        for i, (work, payload) in enumerate(items):
            if i in errors:
                self.reject(work, payload, errors[i])
                continue
            span, fetched = spans.get(i), None
            self.consumed.append(payload)
            if hasattr(work.connector, "split_records"):  # keep only records not held yet
                try:
                    kept_records = new_records(
                        self.reader,
                        self.catalog,
                        work.connector,
                        payload,
                        readings[i].of(i),
                        work.meter,
                    )
                except SourceDataError as exc:
                    self.consumed.pop()
                    self.reject(work, payload, exc)
                    dropped.add(i)
                    continue
                dropped.add(i)
                if kept_records is None:  # the raw log holds every record of it already
                    continue
                payload, single, fetched = kept_records
                replaced[i], span = Parsed.single(single, i), single.span()
                kinds[i] = single.kind
            self.run.add(
                work.meter.id, payload, span, self.now, work.current, records_fetched=fetched
            )
            work.result.payloads_new += 1
            if span:
                work.spans.append(span)
                work.local = work.local and kinds.get(i) in LOCAL_KINDS
        meter_of = [w.meter.id for w, _ in items]
        for group in [*(g.without(dropped) for g in kept), *replaced.values()]:
            if not group.frame.empty:
                self.new.append(group.meter_rows(meter_of))

    def reject(self, work: Work, payload: Payload, exc: SourceDataError, judged: bool = True):
        """Quarantine a payload with its reason, and archive it as rejected when its bytes
        were judged (the same bytes are not judged again under the same configuration)."""
        where = {"participant": self.participant.id, "meter": work.meter.id}
        error = exc.located(**where, file=payload.source)
        if judged:
            self.run.add(work.meter.id, payload, None, self.now, work.current, error=str(error))
        quarantine(self.storage, work.meter.id, payload, str(error))
        work.result.rejected.append(str(error))
        self.consumed.append(payload)

    # 3. what to rewrite: new data, and the whole archive where the configuration changed
    def scope(self, work: Work) -> None:
        meter, archive = work.meter, self.catalog.payloads_of(work.meter.id)
        if work.state.made_with != work.current and not (
            archive.empty and self._rejected_of(meter).empty
        ):
            self.catalog = read_everything(self.storage, self.catalog)
            self._readmit(work)
            archive = self.catalog.payloads_of(meter.id)
            work.spans += [(r.span_start, r.span_end) for r in archive.itertuples()]
            work.local = False
        elif self.force is not None:
            overlapping = self.catalog.payloads_of(meter.id, work.window.start, work.window.end)
            work.spans += [(r.span_start, r.span_end) for r in overlapping.itertuples()]
            work.local = False
        if work.spans or archive.empty:
            work.new_state.made_with = work.current

    def _rejected_of(self, meter: Meter) -> pd.DataFrame:
        if getattr(self, "_rejected", (None,))[0] is not self.catalog.payloads:
            p = self.catalog.payloads
            refused = p[p["status"] == "rejected"]
            self._rejected = (p, dict(tuple(refused.groupby("meter_id", sort=False))))
        return self._rejected[1].get(meter.id, self.catalog.payloads.iloc[:0])

    def _readmit(self, work: Work) -> None:
        """Payloads the meter's earlier configuration refused, judged again by the new one: those
        it accepts join the archive (the run object keeps its record of the refusal)."""
        for row in self._rejected_of(work.meter).itertuples():
            payload = self.reader.payload(row.run_key, row.row)
            try:
                readings = read_payload(work.connector, payload, work.meter, self.storage)
                check_readings(readings, work.meter, self.now)  # plausible under the new one
            except SourceDataError:
                continue
            span = readings.span()
            if span is None:
                continue
            entry = {k: v for k, v in row._asdict().items() if k != "Index"}
            entry.update(status="accepted", error=None, made_with=work.current)
            entry.update(span_start=pd.Timestamp(span[0]), span_end=pd.Timestamp(span[1]))
            self.readmitted.append(entry)
            self.catalog.payloads = pd.concat(
                [self.catalog.payloads, pd.DataFrame([entry])], ignore_index=True
            )

    # 4. standardise every meter with something to rewrite, together
    def standardise(self, works: list[Work]) -> None:
        todo = [w for w in works if w.spans]
        if not todo:
            return
        local = pd.Series([int(w.local) for w in todo])
        starts = pd.Series([pd.Timestamp(min(s[0] for s in w.spans)) for w in todo])
        # A span's end is a minute past its last instant (so that a sample there is inside
        # it): interval and hourly readings end that minute before it.
        ends = pd.Series([pd.Timestamp(max(s[1] for s in w.spans)) for w in todo])
        ends = ends - local * SPAN_SLACK
        rewrite, context = (1 - local) * REWRITE, (1 - local) * CONTEXT
        ranges = pd.DataFrame(
            {
                "meter_id": [w.meter.id for w in todo],
                "data_type": [w.meter.data_type for w in todo],
                "start": starts.dt.floor("h") - rewrite,
                "end": ends.dt.ceil("h") + rewrite,
                "fetch": [w.fetch for w in todo],
                "made_with": [w.current for w in todo],
            }
        )
        # The archived payloads around the hours: for local kinds those whose readings reach
        # into them (their span ends past the first hour's start by more than the slack).
        around = ranges.assign(
            start=ranges["start"] - context + local * SPAN_SLACK, end=ranges["end"] + context
        )
        archive = self.catalog.payloads_within(around)
        work_of = {w.meter.id: w for w in todo}
        archived = [
            (work_of[meter_id], self.reader.payload(run_key, row))
            for meter_id, run_key, row in zip(
                archive["meter_id"], archive["run_key"], archive["row"], strict=True
            )
        ]
        groups, errors = parse_all([(w.meter, w.connector, p) for w, p in archived], self.storage)
        for i, error in errors.items():
            w, payload = archived[i]
            w.result.rejected.append(f"{payload.source} (archived): {error}")
        # Archived readings first, then this run's: later ones win.
        meter_of = [w.meter.id for w, _ in archived]
        frames = [g.meter_rows(meter_of) for g in groups] + self.new
        self.new, groups = [], []  # the readings are held by `frames` alone, until standardised
        hourly = standardise_frames(frames, {w.meter.id: w.meter for w in todo})
        del frames
        release_memory()  # a large export's readings, before the run is written
        fresh = within(hourly.rename(columns={"meter": "meter_id"}), ranges)
        existing = within(self.days.rows(ranges), ranges)
        changed = changed_rows(existing[DAY_COLUMNS], fresh[DAY_COLUMNS])
        self.changed = pd.concat([self.changed, changed], ignore_index=True)
        by_meter = dict(tuple(changed.groupby("meter_id", sort=False)))
        for w in todo:
            if w.meter.id in by_meter:
                w.result.changed = by_meter[w.meter.id].reset_index(drop=True)

    # 5. what the meters' windows hold now: settled hours, what is missing
    def finish(self, works: list[Work]) -> None:
        if not works:
            return
        windows = pd.DataFrame(
            {
                "meter_id": [w.meter.id for w in works],
                "data_type": [w.meter.data_type for w in works],
                "start": [pd.Timestamp(w.window.start) for w in works],
                "end": [pd.Timestamp(w.window.end) for w in works],
            }
        )
        rows = pd.concat(  # what changed first: it wins over what was stored
            [self.changed[DAY_COLUMNS], self.days.rows(windows)[DAY_COLUMNS]], ignore_index=True
        )
        rows = within(rows, windows).drop_duplicates(["meter_id", "hour_utc"])
        complete = rows[is_complete(rows)].groupby("meter_id").size()
        covered = rows[rows["coverage"] > 0].groupby("meter_id")["hour_utc"].max()
        for w in works:
            connector = w.connector
            if w.fetched and not connector.polls and w.meter.id in covered.index:
                alive = min(self.now, covered[w.meter.id].to_pydatetime() + HOUR)
                end = min(w.window.end, floor_hour(alive - connector.settle))
                if end > w.window.start:
                    w.new_state.settle(HourWindow(w.window.start, end))
            if w.new_state != w.state:
                self.meter_states[w.meter.id] = w.new_state
            done = int(complete.get(w.meter.id, 0))
            w.result.hours_missing = len(w.window.hours()) - done


def is_complete(hourly: pd.DataFrame) -> pd.Series:
    """An hour is complete when the source covered all of it with a usable value."""
    return (hourly["coverage"] >= 0.999) & (hourly["quality"] != "missing")


def within(rows: pd.DataFrame, ranges: pd.DataFrame) -> pd.DataFrame:
    """The rows (with meter_id, hour_utc) inside their meter's [start, end), with the ranges'
    other columns."""
    both = rows.drop(columns=[c for c in ranges.columns if c != "meter_id" and c in rows])
    both = both.merge(ranges, on="meter_id")
    return both[(both["hour_utc"] >= both["start"]) & (both["hour_utc"] < both["end"])]


@dataclass(frozen=True)
class Parsed:
    """Readings of several payloads of one kind and unit in one frame (column `payload`: each
    row's payload, numbered as the caller's list numbers them)."""

    kind: str
    unit: str
    frame: pd.DataFrame

    @classmethod
    def single(cls, readings: SourceReadings, payload: int) -> Parsed:
        return cls(readings.kind, readings.unit, readings.frame.assign(payload=payload))

    def payloads(self) -> list[int]:
        return list(pd.unique(self.frame["payload"]))

    def without(self, payloads) -> Parsed:
        return replace(self, frame=self.frame[~self.frame["payload"].isin(list(payloads))])

    def of(self, payload: int) -> SourceReadings:
        rows = self.frame[self.frame["payload"] == payload].drop(columns="payload")
        return SourceReadings(self.kind, self.unit, rows.reset_index(drop=True))

    def meter_rows(self, meter_of_payload: list[str]) -> Readings:
        return Readings(self.kind, self.unit, self.frame)._with_meters(meter_of_payload)

    def spans(self) -> dict[int, tuple]:
        """Each payload's span (as SourceReadings.span), computed for all at once."""
        if self.frame.empty:
            return {}
        first, last = {"interval": ("start", "end"), "hourly": ("hour_utc", "hour_utc")}.get(
            self.kind, ("time", "time")
        )
        grouped = self.frame.groupby("payload")
        starts = grouped[first].min().dt.floor("min")
        ends = grouped[last].max() + pd.Timedelta(hours=1 if self.kind == "hourly" else 0)
        ends = ends.dt.ceil("min") + pd.Timedelta(minutes=1)
        return {
            int(p): (s.to_pydatetime(), e.to_pydatetime())
            for p, s, e in zip(starts.index, starts, ends, strict=True)
        }


@dataclass(frozen=True)
class Readings:
    """Readings on their way to standardisation: a frame whose `payload` column tells each
    row's payload, and, once known, `meter` its meter."""

    kind: str
    unit: str
    frame: pd.DataFrame

    def _with_meters(self, meter_of_payload: list[str]) -> Readings:
        # Taken as text, not as a Python string per row (a large export has millions of rows).
        meters = pd.Series(meter_of_payload, dtype="str").take(self.frame["payload"])
        return replace(self, frame=self.frame.assign(meter=meters.array))


def parse_all(
    items: list[tuple[Meter, object, Payload]], storage: Storage
) -> tuple[list[Parsed], dict[int, SourceDataError]]:
    """Every payload parsed once: those of meters read alike (same connector and settings) in
    one call of the connector's `parse_many` where it has one (one streamed into the raw log is
    parsed on its own, from there). Their readings in groups of one kind and unit, and the error
    of each payload that could not be read."""
    errors: dict[int, SourceDataError] = {}
    groups: dict[str, list[int]] = {}
    for i, (meter, connector, payload) in enumerate(items):
        if payload.refused:
            errors[i] = SourceDataError(payload.refused)
            continue
        settings = meter.connector.model_dump(exclude={"path"})
        key = json.dumps([connector.type, meter.data_type, settings], sort_keys=True, default=str)
        groups.setdefault(key, []).append(i)
    parsed: list[Parsed] = []
    singles: dict[tuple[str, str], list[pd.DataFrame]] = {}
    for members in groups.values():
        meter, connector, _ = items[members[0]]
        if not hasattr(connector, "parse_many"):
            for one in _each(connector, meter, {i: items[i][2] for i in members}, storage, errors):
                singles.setdefault((one.kind, one.unit), []).append(one.frame)
            continue
        together = [i for i in members if not items[i][2].stored]
        readings, failed = connector.parse_many(
            [(items[i][2].data, items[i][2].name) for i in together], meter
        )
        numbers = pd.Series(together, dtype="int64")
        frame = readings.frame.assign(payload=numbers[readings.frame["file"]].to_numpy())
        errors.update({together[n]: error for n, error in failed.items()})
        streamed = {i: items[i][2] for i in members if items[i][2].stored}  # each from its object
        alone = [one.frame for one in _each(connector, meter, streamed, storage, errors)]
        frame = frame.drop(columns="file")
        if alone:  # in payload order: later ones win
            frame = pd.concat([frame, *alone], ignore_index=True)
            frame = frame.sort_values("payload", kind="stable", ignore_index=True)
        parsed.append(Parsed(readings.kind, readings.unit, frame))
    for (kind, unit), frames in singles.items():
        parsed.append(Parsed(kind, unit, pd.concat(frames, ignore_index=True)))
    return parsed, errors


def _each(
    connector, meter: Meter, payloads: dict[int, Payload], storage: Storage, errors: dict
) -> list[Parsed]:
    """Each payload parsed on its own (numbered as given), or its error put in `errors`."""
    parsed = []
    for i, payload in payloads.items():
        try:
            parsed.append(Parsed.single(read_payload(connector, payload, meter, storage), i))
        except SourceDataError as exc:
            errors[i] = exc
    return parsed


def standardise_frames(frames: list[Readings], meters: dict[str, Meter]) -> pd.DataFrame:
    """Every meter's hourly readings (column `meter`) from readings frames with a `meter`
    column, in the order given (later ones win): meters whose readings are of one kind and
    quantity in one pass."""
    groups: dict[tuple[str, str], list[pd.DataFrame]] = {}
    units: dict[str, str] = {}
    for r in frames:
        if r.frame.empty:
            continue
        unit = standard_unit(r.unit)
        # Each payload has its own unit (one push file in Wh, the next in kWh).
        values = to_standard(r.frame["value"].to_numpy(), r.unit)
        groups.setdefault((r.kind, unit), []).append(r.frame.assign(value=values))
        units.update(dict.fromkeys(pd.unique(r.frame["meter"]), r.unit))
    settings = {}
    for meter_id, source_unit in units.items():
        meter = meters[meter_id]
        register_max = getattr(meter.connector, "register_max", None)  # in the source unit
        settings[meter_id] = MeterSettings(
            meter.data_type,
            None if register_max is None else float(to_standard(register_max, source_unit)),
            getattr(meter.connector, "max_gap_minutes", None),
        )
    out = []
    for (kind, unit), parts in groups.items():
        frame = pd.concat(parts, ignore_index=True)
        out.append(standardise_meters(kind, unit, frame.drop(columns="payload"), settings))
    return pd.concat(out, ignore_index=True) if out else empty_hourly().assign(meter="")


def standardise_many(meters: list[tuple[Meter, list[SourceReadings]]]) -> dict[str, pd.DataFrame]:
    """Each meter's hourly readings from its parsed payloads (oldest first: later ones win)."""
    frames = [
        Readings(r.kind, r.unit, r.frame.assign(payload=0, meter=meter.id))
        for meter, parsed in meters
        for r in parsed
    ]
    hourly = standardise_frames(frames, {meter.id: meter for meter, _ in meters})
    return {m: rows.drop(columns="meter") for m, rows in hourly.groupby("meter", sort=False)}
