"""Meter health from its tasks and the meter-hour ledger, as of a dispatch.

A meter is, first match wins: `failing` (its last FAILING_AFTER executions failed), `silent` (no
new data for longer than its silent threshold), `quarantined` (its last input was refused),
`deferred` (its source's rate budget put it off), `late` (its data is behind its expected
latency) or `ok`. Thresholds come from the meter's XML (`latencyHours`, `silentAfterHours`) or
its connector's defaults. `since` is when the state began: for silent and late, the end of the
meter's last hour of data (or when it was first seen, if it never had any).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from meterflow.common.timeutil import warehouse_time
from meterflow.configuration.config import Participant
from meterflow.jobs.thresholds import Thresholds
from meterflow.warehouse.backend import Warehouse, identifier_list
from meterflow.warehouse.schema import TABLES, TYPES

FAILING_AFTER = 3  # failed executions in a row
HOUR = timedelta(hours=1)
COLUMNS = TABLES["meter_health"].column_names


def last_data(wh: Warehouse, participant_ids: list[str], as_of: datetime) -> pd.DataFrame:
    """Per meter (`participant_id`, `meter_id`) the latest hour before `as_of` it has a reading
    for, `last_data_utc` (a forecast's hours ahead are not news of the meter)."""
    return wh.query(
        f"SELECT participant_id, meter_id, max(hour_utc) AS last_data_utc "
        f"FROM {wh.table('fact_meter_hourly')} "
        f"WHERE participant_id IN ({identifier_list(participant_ids, 'participant')}) "
        "AND value IS NOT NULL AND hour_utc < ? GROUP BY participant_id, meter_id",
        [warehouse_time(as_of)],
    )


def current(wh: Warehouse, participant_id: str | None = None) -> pd.DataFrame:
    """Every meter's health as of its latest dispatch (of one participant, or all)."""
    text = TYPES[wh.dialect]["text"]
    return wh.query(
        f"SELECT * FROM {wh.table('meter_health')} WHERE CAST(? AS {text}) IS NULL "
        "OR participant_id = ? ORDER BY participant_id, meter_id",
        [participant_id, participant_id],
    )


def previous(wh: Warehouse, participant_ids: list[str]) -> pd.DataFrame:
    """The meters' health rows as of the last dispatch that evaluated them."""
    return wh.query(
        f"SELECT * FROM {wh.table('meter_health')} "
        f"WHERE participant_id IN ({identifier_list(participant_ids, 'participant')})"
    )


def evaluate(
    meters: pd.DataFrame,
    data_until: pd.DataFrame,
    runs: pd.DataFrame,
    before: pd.DataFrame,
    as_of: datetime,
) -> pd.DataFrame:
    """Each meter's health as of `as_of` (UTC), every participant at once. `meters`: one row
    per meter (`participant_id`, `meter_id`, `property_id`, `latency`, `silent_after`, see
    `meter_thresholds`); `data_until`: its latest hour with a reading (`last_data`); `runs`:
    this dispatch's execution `status` (done, failed, quarantined, deferred) and `error` per
    meter it ran; `before`: the previous health rows."""
    key = ["participant_id", "meter_id"]
    now = pd.Timestamp(warehouse_time(as_of))
    old = before.drop(columns=["property_id", "last_data_utc", "evaluated_utc"], errors="ignore")
    m = (
        meters.merge(data_until, on=key, how="left")
        .merge(runs[[*key, "status", "error"]], on=key, how="left")
        .merge(old, on=key, how="left")
    )
    status = m["status"]
    failed_runs = m["failed_runs"].fillna(0).astype(int)
    failed_runs = failed_runs.where(~status.isin(["done", "quarantined"]), 0)
    failed_runs = failed_runs + status.eq("failed").astype(int)
    first_seen = pd.to_datetime(m["first_seen_utc"]).fillna(now)
    last = pd.to_datetime(m["last_data_utc"])
    data_end = (last + HOUR).fillna(first_seen)
    behind = now - data_end
    kept = m["state"].where(status.isna())  # the state of a meter this run did not touch
    state = np.select(
        [
            failed_runs >= FAILING_AFTER,
            behind > m["silent_after"],
            status.eq("quarantined") | kept.eq("quarantined"),
            status.eq("deferred") | kept.eq("deferred"),
            behind > m["latency"],
        ],
        ["failing", "silent", "quarantined", "deferred", "late"],
        "ok",
    )
    unchanged = m["state"].eq(state)
    since = pd.to_datetime(m["since_utc"]).where(unchanged, now)
    since = since.where(~pd.Series(state).isin(["silent", "late"]).to_numpy(), data_end)
    error = m["error"].where(m["error"].notna(), m["last_error"].where(failed_runs > 0))
    error = error.astype(object).where(error.notna(), None)
    return pd.DataFrame(
        {
            **{c: m[c] for c in (*key, "property_id")},
            "state": state,
            "since_utc": since,
            "last_data_utc": last,
            "failed_runs": failed_runs,
            "last_error": error,
            "first_seen_utc": first_seen,
            "evaluated_utc": now,
        },
        columns=COLUMNS,
    )


def meter_thresholds(
    participants: list[Participant], thresholds_of: Callable[[Participant], dict[str, Thresholds]]
) -> pd.DataFrame:
    """One row per meter of the participants with its thresholds, as `evaluate` takes them."""
    rows = []
    for participant in participants:
        limits = thresholds_of(participant)
        for meter in participant.meters:
            own = limits[meter.id]
            rows.append(
                (participant.id, meter.id, meter.property_id, own.latency, own.silent_after)
            )
    columns = ["participant_id", "meter_id", "property_id", "latency", "silent_after"]
    return pd.DataFrame(rows, columns=columns)


def reading_hours(wh: Warehouse, participant_id: str, start: datetime, end: datetime):
    """The hours in [start, end) each meter has a reading for (`meter_id`, `hour_utc`)."""
    return wh.query(
        f"SELECT meter_id, hour_utc FROM {wh.table('fact_meter_hourly')} WHERE participant_id = ? "
        "AND value IS NOT NULL AND hour_utc >= ? AND hour_utc < ? ORDER BY meter_id, hour_utc",
        [participant_id, warehouse_time(start), warehouse_time(end)],
    )


def silences(
    hours: pd.DataFrame, thresholds: dict[str, Thresholds], start: datetime, end: datetime
) -> pd.DataFrame:
    """When hourly dispatches over [start, end) would have found each meter silent, from the
    hours it has a reading for (`meter_id`, `hour_utc` naive UTC): a gap in its data longer
    than its silent threshold: `since` (the end of the last hour before it), `alerted` (the
    first hourly dispatch that found it silent) and `resolved` (the first that had its data
    again; None if it has not). What the alerts of a backfilled period would have been."""
    first = pd.Timestamp(warehouse_time(start))
    last = pd.Timestamp(warehouse_time(end))
    found = []
    for meter_id, limits in thresholds.items():
        stamps = hours.loc[hours["meter_id"] == meter_id, "hour_utc"].sort_values()
        ends = list(stamps + HOUR)
        starts = [*stamps.iloc[1:], None]
        for data_end, resumed in zip(ends, starts, strict=True):
            until = resumed if resumed is not None else last
            if data_end >= last or until - data_end <= limits.silent_after or until < first:
                continue
            found.append(
                {
                    "meter_id": meter_id,
                    "since": data_end,
                    "alerted": (data_end + limits.silent_after).floor("h") + HOUR,
                    "resolved": None if resumed is None else resumed + HOUR,
                }
            )
    return pd.DataFrame(found, columns=["meter_id", "since", "alerted", "resolved"])
