"""What the flows load: configuration (with history), facts, calendar and emission factors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from meterflow.aggregation.aggregate import PROPERTY_COLUMNS, aggregate_rows
from meterflow.aggregation.calendar import calendar_rows
from meterflow.aggregation.emission_factors import read_factors, refuse_silent_changes
from meterflow.common.memory import release_memory
from meterflow.common.storage import Storage
from meterflow.common.timeutil import HourWindow, chunks, merge_windows, warehouse_time
from meterflow.configuration.config import Participant, Property
from meterflow.hours.hourly_store import DAY_SCHEMA, day_key, read_days
from meterflow.standardisation.readings import HOURLY_COLUMNS
from meterflow.warehouse.backend import (
    LoadCounts,
    StoredRows,
    Warehouse,
    identifier_list,
    prepare,
)
from meterflow.warehouse.schema import TABLES

DEFAULT_DEGREE_DAY_BASE_C = 18.0


def load_configuration(wh: Warehouse, participant: Participant, now: datetime) -> LoadCounts:
    """Participant, properties and meters; a changed row is closed (valid_to) and a new one
    opened (valid_from), so every fact can be read against the configuration of its time."""
    return load_configurations(wh, [participant], now)


def load_configurations(wh: Warehouse, participants: list[Participant], now) -> LoadCounts:
    """load_configuration for many participants in one query and one upsert per table: an
    hourly dispatch finds them unchanged and writes nothing."""
    if not participants:
        return LoadCounts()
    properties = pd.DataFrame(
        [
            {
                "participant_id": participant.id,
                "property_id": p.id,
                "name": p.name,
                "timezone": p.timezone,
                "country": p.country,
                "region": p.region,
                "floor_area_m2": p.floor_area_m2,
                "office_days": " ".join(p.office_hours.days) if p.office_hours else None,
                "office_start": p.office_hours.start if p.office_hours else None,
                "office_end": p.office_hours.end if p.office_hours else None,
                "degree_day_base_c": p.degree_day_base_c or DEFAULT_DEGREE_DAY_BASE_C,
            }
            for participant in participants
            for p in participant.properties
        ]
    )
    meters = pd.DataFrame(
        [
            {
                "participant_id": participant.id,
                "meter_id": m.id,
                "property_id": m.property_id,
                "name": m.name,
                "data_type": m.data_type,
                "unit": m.unit,
                "connector_type": m.connector.type,
                "device_id": m.device_id,
                "role": m.role,
                "config_fingerprint": m.fingerprint,
            }
            for participant in participants
            for m in participant.meters
        ]
    )
    names = pd.DataFrame([{"participant_id": p.id, "name": p.name} for p in participants])
    ids = [p.id for p in participants]
    return (
        wh.upsert("dim_participant", names)
        + _with_history(wh, "dim_property", "property_id", ids, properties, now)
        + _with_history(wh, "dim_meter", "meter_id", ids, meters, now)
        + load_supply(wh, participants)
    )


def load_supply(wh: Warehouse, participants: list[Participant]) -> LoadCounts:
    """The properties' supply contracts as the XML says now: changed rows upserted, contracts
    no longer in the XML deleted (a contract's dates are its history)."""
    rows = pd.DataFrame(
        [
            {"participant_id": participant.id, "property_id": prop.id, **row}
            for participant in participants
            for prop in participant.properties
            for row in _contract_rows(prop)
        ],
        columns=TABLES["dim_supply"].column_names,
    )
    key = ["participant_id", "property_id", "valid_from", "seq"]
    stored = wh.query(
        f"SELECT {', '.join(key)} FROM {wh.table('dim_supply')} WHERE participant_id IN "
        f"({identifier_list([p.id for p in participants], 'participant id')})"
    )
    wanted = {(r.participant_id, r.property_id, r.valid_from, r.seq) for r in rows.itertuples()}
    for gone in stored.itertuples(index=False):
        item = (
            gone.participant_id,
            gone.property_id,
            pd.Timestamp(gone.valid_from).date(),
            gone.seq,
        )
        if item not in wanted:
            wh.execute(
                f"DELETE FROM {wh.table('dim_supply')} WHERE participant_id = ? "
                "AND property_id = ? AND valid_from = ? AND seq = ?",
                list(item),
            )
    return wh.upsert("dim_supply", rows) if not rows.empty else LoadCounts()


def _contract_rows(prop: Property) -> list[dict]:
    """Row 0 per contract is the contract (the supplier's rate of the rest); 1.. instruments."""
    rows = []
    for contract in prop.supply:
        dates = {"valid_from": contract.start, "valid_to": contract.end}
        common = {**dates, "contract_name": contract.name}
        rows.append(
            {
                **common,
                "seq": 0,
                "instrument": "contract",
                "kg_per_kwh": contract.supplier_kg_per_kwh,
            }
        )
        rows += [
            {
                **common,
                "seq": n,
                "instrument": i.kind,
                "share": i.share,
                "mwh": i.mwh,
                "per": None if i.share is not None else i.per,
                "kg_per_kwh": i.kg_per_kwh,
                "scheme": i.scheme,
            }
            for n, i in enumerate(contract.instruments, start=1)
        ]
    return rows


def _with_history(
    wh: Warehouse, table: str, id_column: str, participant_ids: list[str], rows: pd.DataFrame, now
) -> LoadCounts:
    attributes = [c for c in rows.columns if c not in ("participant_id", id_column)]
    key = ["participant_id", id_column]
    current = wh.query(
        f"SELECT * FROM {wh.table(table)} "
        f"WHERE participant_id IN ({identifier_list(participant_ids, 'participant id')}) "
        "AND valid_to IS NULL"
    )
    # The open rows as the warehouse holds them, prepared once (not once per row).
    before = prepare(current[[*key, *attributes]]).set_index(key).to_dict("index")
    stamp = warehouse_time(now)
    opened = []
    for row in prepare(rows).to_dict("records"):
        item = (row["participant_id"], row[id_column])
        if item in before:
            if all(_same(before[item][a], row[a]) for a in attributes):
                continue
            _close(wh, table, id_column, *item, stamp)
        opened.append({**row, "valid_from": stamp, "valid_to": None})
    for gone in set(before) - set(zip(rows["participant_id"], rows[id_column], strict=True)):
        _close(wh, table, id_column, *gone, stamp)
    if not opened:
        return LoadCounts()
    return wh.upsert(table, pd.DataFrame(opened))


def _close(wh: Warehouse, table: str, id_column: str, participant_id, item_id, stamp) -> None:
    wh.execute(
        f"UPDATE {wh.table(table)} SET valid_to = ? "
        f"WHERE participant_id = ? AND {id_column} = ? AND valid_to IS NULL",
        [stamp, participant_id, item_id],
    )


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(float(a) - float(b)) < 1e-9
    return a == b


def load_meter_hours(
    wh: Warehouse, participant: Participant, rows_by_meter: dict[str, pd.DataFrame]
) -> LoadCounts:
    frames = [rows.assign(meter_id=m) for m, rows in rows_by_meter.items() if not rows.empty]
    if not frames:
        return LoadCounts()
    return load_meter_rows(wh, participant, pd.concat(frames, ignore_index=True))


def load_meter_rows(wh: Warehouse, participant: Participant, rows: pd.DataFrame) -> LoadCounts:
    """Meter-hour rows (with `meter_id`) into fact_meter_hourly, in one upsert."""
    if rows.empty:
        return LoadCounts()
    types = {m.id: m.data_type for m in participant.meters}
    rows = rows.assign(participant_id=participant.id, data_type=rows["meter_id"].map(types))
    return wh.upsert("fact_meter_hourly", rows)


def load_property_hours(wh: Warehouse, participant_id: str, rows: pd.DataFrame) -> LoadCounts:
    return wh.upsert("fact_hourly", rows[PROPERTY_COLUMNS].assign(participant_id=participant_id))


def load_calendar(wh: Warehouse, participant: Participant, hours: pd.DatetimeIndex) -> LoadCounts:
    """The local calendar of every property for the given hours."""
    frames = [
        calendar_rows(participant.id, p, hours, participant.closures_of(p))
        for p in participant.properties
    ]
    return wh.upsert("dim_calendar", pd.concat(frames, ignore_index=True))


def load_emission_factors(wh: Warehouse) -> LoadCounts:
    factors = read_factors()
    stored = wh.query(f"SELECT * FROM {wh.table('dim_emission_factor')}")
    refuse_silent_changes(factors, stored)
    return wh.upsert("dim_emission_factor", factors[TABLES["dim_emission_factor"].column_names])


# What a load takes of the day files: not the provenance (fetch, made_with), the longest strings.
LOADED_COLUMNS = ["meter_id", *HOURLY_COLUMNS]


def window_frame(storage: Storage, participant: Participant, window: HourWindow) -> pd.DataFrame:
    """Every meter's stored hours inside the window, one frame (each day file read once)."""
    meters = {m.id for m in participant.meters}
    frames = [
        read_days(storage, data_type, window.days(), LOADED_COLUMNS).assign(data_type=data_type)
        for data_type in sorted({m.data_type for m in participant.meters})
    ]
    rows = pd.concat(frames, ignore_index=True)
    inside = (rows["hour_utc"] >= window.start) & (rows["hour_utc"] < window.end)
    return rows[inside & rows["meter_id"].isin(meters)].reset_index(drop=True)


def load_window(
    wh: Warehouse, storage: Storage, participant: Participant, window: HourWindow, now: datetime
) -> LoadCounts:
    """Configuration (with history), emission factors, the local calendar and the meter-hours
    of the window. The calendar spans the window's hours from its first to its last hour of
    data, never beyond: an empty or stray span adds no calendar rows."""
    loader = Loader(wh)
    loader.counts += load_configuration(wh, participant, now) + load_emission_factors(wh)
    loader.facts(storage, participant, window, window_frame(storage, participant, window))
    return loader.flush()


def aggregate_window(
    wh: Warehouse, storage: Storage, participant: Participant, window: HourWindow
) -> LoadCounts:
    """Recompute and upsert the property-hours of the window for every data type."""
    loader = Loader(wh)
    loader.aggregates(participant, window_frame(storage, participant, window))
    return loader.flush()


def load_hours(
    wh: Warehouse, storage: Storage, participant: Participant, window: HourWindow, now: datetime
) -> LoadCounts:
    """load_window and aggregate_window, the window's day files read once for both."""
    loader = Loader(wh)
    loader.counts += load_configuration(wh, participant, now) + load_emission_factors(wh)
    rows = window_frame(storage, participant, window)
    loader.facts(storage, participant, window, rows)
    loader.aggregates(participant, rows)
    return loader.flush()


# Meter-hours gathered across participants and windows before their upserts run: an hourly
# dispatch of 10,000 meters is one statement per table, a backfill's memory stays bounded (at
# 200,000 the flow's loads set the peak of a 10,000-meter month's backfill: 999-1,041 MiB PSS
# with its workers, 955-968 at 100,000).
ROWS_PER_UPSERT = 100_000
# A load has a fixed cost (the configuration compared, emission factors, a transaction and a
# MERGE per table: about 0.2 s on DuckDB here) that one participant's rows (0.1 s for 100 meters x
# 7 days) would pay alone.
LOAD_AT_LEAST = 3


def load_at_least(left: int, workers: int) -> int:
    """How many collected participants a dispatch waits for before it loads them together (all
    it has by then): LOAD_AT_LEAST, or a quarter per worker process of those left when that is
    more, and never more than are left. Many small participants (an hourly dispatch: 100 of one
    hour each) then pay a load's fixed cost about a dozen times, not once per three, and the
    last loads, which wait for the last participants, stay small."""
    return min(left, max(LOAD_AT_LEAST, -(-left // (2 * workers))))


def load_days(participant: Participant) -> int:
    """How many days of the participant's hours a load reads at a time: a week, or fewer when a
    week would be more than ROWS_PER_UPSERT meter-hours (1,000 meters: 4 days)."""
    return max(1, min(7, ROWS_PER_UPSERT // (24 * max(1, len(participant.meters)))))


class Loader:
    """Upserts gathered across participants and windows, run one statement per table when
    ROWS_PER_UPSERT meter-hours have gathered and at `flush`: a hundred participants' new hour
    is one MERGE per table, not a hundred (each costs a transaction and a scan of the target)."""

    def __init__(self, wh: Warehouse):
        self.wh = wh.prepare()
        self.counts = LoadCounts()
        self._calendar: list[pd.DataFrame] = []
        self._stored: list[tuple[StoredRows, pd.DataFrame]] = []
        self._property: list[pd.DataFrame] = []
        self._gathered = 0

    def facts(
        self, storage: Storage, participant: Participant, window: HourWindow, rows: pd.DataFrame
    ) -> None:
        """The local calendar from the rows' first to last hour, and the meter-hours, taken
        straight from the day files they came from where the backend reads them (DuckDB local
        files, BigQuery `gs://`), else the rows themselves."""
        if rows.empty:
            return
        first, last = rows["hour_utc"].min(), rows["hour_utc"].max()
        hours = window.hours()
        hours = hours[(hours >= first) & (hours <= last)]
        self._calendar += [calendar_rows(participant.id, p, hours) for p in participant.properties]
        days = rows["hour_utc"].dt.floor("D")  # the UTC days of the day files they came from
        for data_type, group in rows.groupby("data_type"):
            stored = StoredRows(
                uris=[
                    storage.uri(day_key(data_type, f"{d:%Y-%m-%d}"))
                    for d in sorted(days[group.index].unique())
                ],
                schema=DAY_SCHEMA,
                constants={"participant_id": participant.id, "data_type": data_type},
                start=window.start,
                end=window.end,
                meters=sorted(m.id for m in participant.meters if m.data_type == data_type),
            )
            self._stored.append((stored, group.assign(participant_id=participant.id)))
        self._gather(len(rows))

    def aggregates(self, participant: Participant, rows: pd.DataFrame) -> None:
        """The property-hours of every data type the rows hold."""
        property_rows = aggregate_rows(participant, rows)[PROPERTY_COLUMNS]
        self._property.append(property_rows.assign(participant_id=participant.id))
        self._gather(len(rows))

    def _gather(self, rows: int) -> None:
        self._gathered += rows
        if self._gathered >= ROWS_PER_UPSERT:
            self.flush()

    def flush(self) -> LoadCounts:
        """Run the gathered upserts; everything loaded so far, counted."""
        wh = self.wh
        if self._calendar:
            self.counts += wh.upsert("dim_calendar", pd.concat(self._calendar, ignore_index=True))
        if self._stored:
            loaded = wh.upsert_stored_many("fact_meter_hourly", [s for s, _ in self._stored])
            if loaded is None:
                rows = pd.concat([r for _, r in self._stored], ignore_index=True)
                loaded = wh.upsert("fact_meter_hourly", rows)
            self.counts += loaded
        if self._property:
            rows = pd.concat(self._property, ignore_index=True)
            self.counts += wh.upsert("fact_hourly", rows)
        self._calendar, self._stored, self._property, self._gathered = [], [], [], 0
        release_memory()  # a month's backfill flushes each week: its frames go back each time
        return self.counts


@dataclass
class Pending:
    """A participant whose merged runs (from its catalog) the warehouse may not have loaded."""

    storage: Storage
    participant: Participant
    runs: list[dict]


def load_pending(
    wh: Warehouse, pending: list[Pending], now: datetime
) -> tuple[dict[str, list[HourWindow]], dict[str, Exception]]:
    """Load and aggregate what the participants' runs not yet loaded changed (this dispatch's,
    and any a lost flow left), `load_days` at a time, gathered across participants, then record
    those runs as loaded. Each participant's loaded spans in order, and the participants whose
    stored hours could not be read, with why (the others still load)."""
    loader = Loader(wh)
    loader.counts += load_configurations(wh, [p.participant for p in pending], now)
    loader.counts += load_emission_factors(wh)
    unloaded = unloaded_runs(wh, {p.participant.id: p.runs for p in pending})
    spans_of: dict[str, list[HourWindow]] = {}
    failed: dict[str, Exception] = {}
    for item in pending:
        participant_id = item.participant.id
        days = load_days(item.participant)
        spans = [c for span in changed_spans(unloaded[participant_id]) for c in chunks(span, days)]
        for span in spans:  # a few days at a time: a large participant's month is not held
            try:
                rows = window_frame(item.storage, item.participant, span)
            except Exception as exc:  # a day file that cannot be read: this participant alone
                failed[participant_id] = exc  # (its runs load again, whole, next time)
                break
            loader.facts(item.storage, item.participant, span, rows)
            loader.aggregates(item.participant, rows)
        else:
            spans_of[participant_id] = spans
    loader.flush()
    record_loads(wh, {pid: unloaded[pid] for pid in spans_of})
    return spans_of, failed


def unloaded_runs(wh: Warehouse, runs_of: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Each participant's merged runs that the warehouse has not loaded (its own log says which
    it has), in one query."""
    loaded = wh.query(
        f"SELECT participant_id, run_id FROM {wh.table('load_log')} "
        f"WHERE participant_id IN ({identifier_list(list(runs_of), 'participant id')})"
    )
    done = set(zip(loaded["participant_id"], loaded["run_id"], strict=True))
    return {
        pid: [run for run in runs if (pid, run["run"]) not in done] for pid, runs in runs_of.items()
    }


def changed_spans(runs: list[dict]) -> list[HourWindow]:
    """What the runs changed, as merged spans."""
    return merge_windows([HourWindow.parse(*run["changed"]) for run in runs if run["changed"]])


def runs_within(runs: list[dict], window: HourWindow) -> list[dict]:
    """The runs whose changes lie inside the window (a load of it loads them)."""

    def inside(run: dict) -> bool:
        if run["changed"] is None:
            return True
        changed = HourWindow.parse(*run["changed"])
        return window.start <= changed.start and changed.end <= window.end

    return [run for run in runs if inside(run)]


def record_loads(wh: Warehouse, runs_of: dict[str, list[dict]]) -> None:
    """Record the runs as loaded, in one upsert; a run already recorded keeps the time of its
    first load, so reloading a window changes no row."""
    runs_of = unloaded_runs(wh, runs_of) if runs_of else {}
    loaded = [(pid, run["run"]) for pid, runs in runs_of.items() for run in runs]
    rows = pd.DataFrame(loaded, columns=["participant_id", "run_id"])
    if not rows.empty:
        wh.upsert("load_log", rows.assign(loaded_utc=pd.Timestamp.now(tz="UTC")))
