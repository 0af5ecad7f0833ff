"""What the flows load: configuration (with history), facts, calendar and emission factors."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from meterflow.aggregation.aggregate import PROPERTY_COLUMNS, aggregate_rows
from meterflow.aggregation.calendar import calendar_rows
from meterflow.aggregation.emission_factors import read_factors, refuse_silent_changes
from meterflow.common.storage import Storage
from meterflow.common.timeutil import HourWindow, merge_windows, warehouse_time
from meterflow.configuration.config import Participant
from meterflow.hours.hourly_store import DAY_SCHEMA, day_key, read_days
from meterflow.warehouse.backend import LoadCounts, StoredRows, Warehouse, prepare
from meterflow.warehouse.schema import TABLES

DEFAULT_DEGREE_DAY_BASE_C = 18.0


def load_configuration(wh: Warehouse, participant: Participant, now: datetime) -> LoadCounts:
    """Participant, properties and meters; a changed row is closed (valid_to) and a new one
    opened (valid_from), so every fact can be read against the configuration of its time."""
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
            for m in participant.meters
        ]
    )
    names = pd.DataFrame([{"participant_id": participant.id, "name": participant.name}])
    return (
        wh.upsert("dim_participant", names)
        + _with_history(wh, "dim_property", "property_id", participant.id, properties, now)
        + _with_history(wh, "dim_meter", "meter_id", participant.id, meters, now)
    )


def _with_history(
    wh: Warehouse, table: str, id_column: str, participant_id: str, rows: pd.DataFrame, now
) -> LoadCounts:
    attributes = [c for c in rows.columns if c not in ("participant_id", id_column)]
    current = wh.query(
        f"SELECT * FROM {wh.table(table)} WHERE participant_id = ? AND valid_to IS NULL",
        [participant_id],
    )
    # The open rows as the warehouse holds them, prepared once (not once per row).
    before = prepare(current[[id_column, *attributes]]).set_index(id_column).to_dict("index")
    stamp = warehouse_time(now)
    opened = []
    for row in prepare(rows).to_dict("records"):
        if row[id_column] in before:
            if all(_same(before[row[id_column]][a], row[a]) for a in attributes):
                continue
            _close(wh, table, id_column, participant_id, row[id_column], stamp)
        opened.append({**row, "valid_from": stamp, "valid_to": None})
    for gone in set(before) - set(rows[id_column]):
        _close(wh, table, id_column, participant_id, gone, stamp)
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
    frames = [calendar_rows(participant.id, p, hours) for p in participant.properties]
    return wh.upsert("dim_calendar", pd.concat(frames, ignore_index=True))


def load_emission_factors(wh: Warehouse) -> LoadCounts:
    factors = read_factors()
    stored = wh.query(f"SELECT * FROM {wh.table('dim_emission_factor')}")
    refuse_silent_changes(factors, stored)
    return wh.upsert("dim_emission_factor", factors[TABLES["dim_emission_factor"].column_names])


def window_frame(storage: Storage, participant: Participant, window: HourWindow) -> pd.DataFrame:
    """Every meter's stored hours inside the window, one frame (each day file read once)."""
    meters = {m.id for m in participant.meters}
    frames = [
        read_days(storage, data_type, window.days()).assign(data_type=data_type)
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
    rows = window_frame(storage, participant, window)
    return _load(wh, storage, participant, rows, window, now)


def aggregate_window(
    wh: Warehouse, storage: Storage, participant: Participant, window: HourWindow
) -> LoadCounts:
    """Recompute and upsert the property-hours of the window for every data type."""
    return _aggregate(wh, participant, window_frame(storage, participant, window))


def load_hours(
    wh: Warehouse, storage: Storage, participant: Participant, window: HourWindow, now: datetime
) -> LoadCounts:
    """load_window and aggregate_window, the window's day files read once for both."""
    rows = window_frame(storage, participant, window)
    return _load(wh, storage, participant, rows, window, now) + _aggregate(wh, participant, rows)


def _load(wh, storage, participant, rows: pd.DataFrame, window: HourWindow, now) -> LoadCounts:
    wh.prepare()
    counts = load_configuration(wh, participant, now) + load_emission_factors(wh)
    if not rows.empty:
        first, last = rows["hour_utc"].min(), rows["hour_utc"].max()
        hours = window.hours()
        counts += load_calendar(wh, participant, hours[(hours >= first) & (hours <= last)])
    return counts + _load_facts(wh, storage, participant, rows, window)


def _load_facts(
    wh: Warehouse, storage: Storage, participant: Participant, rows: pd.DataFrame, window
) -> LoadCounts:
    """fact_meter_hourly straight from the day files the rows came from where the backend
    reads them (DuckDB local files, BigQuery `gs://`), else the rows themselves."""
    if rows.empty:
        return LoadCounts()
    days = rows["hour_utc"].dt.strftime("%Y-%m-%d")
    counts = LoadCounts()
    for data_type, group in rows.groupby("data_type"):
        stored = StoredRows(
            uris=[storage.uri(day_key(data_type, day)) for day in sorted(set(days[group.index]))],
            schema=DAY_SCHEMA,
            constants={"participant_id": participant.id, "data_type": data_type},
            start=window.start,
            end=window.end,
            meters=sorted(m.id for m in participant.meters if m.data_type == data_type),
        )
        loaded = wh.upsert_stored("fact_meter_hourly", stored)
        counts += loaded if loaded is not None else load_meter_rows(wh, participant, group)
    return counts


def _aggregate(wh, participant, rows: pd.DataFrame) -> LoadCounts:
    wh.prepare()
    return load_property_hours(wh, participant.id, aggregate_rows(participant, rows))


def unloaded_runs(wh: Warehouse, participant_id: str, runs: list[dict]) -> list[dict]:
    """The merged runs the warehouse has not loaded (its own log says which it has)."""
    wh.prepare()
    loaded = wh.query(
        f"SELECT run_id FROM {wh.table('load_log')} WHERE participant_id = ?", [participant_id]
    )
    done = set(loaded["run_id"])
    return [run for run in runs if run["run"] not in done]


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


def record_loads(wh: Warehouse, participant_id: str, runs: list[dict]) -> None:
    """Record the runs as loaded; a run already recorded keeps the time of its first load, so
    reloading a window changes no row."""
    runs = unloaded_runs(wh, participant_id, runs)
    if runs:
        rows = pd.DataFrame(
            {"participant_id": participant_id, "run_id": [r["run"] for r in runs]}
        ).assign(loaded_utc=pd.Timestamp.now(tz="UTC"))
        wh.upsert("load_log", rows)
