"""Meter health from its tasks and the meter-hour ledger, as of a dispatch.

A meter is, first match wins: `failing` (its last FAILING_AFTER executions failed), `silent` (no
new data for longer than its silent threshold), `quarantined` (its last input was refused),
`deferred` (its source's rate budget put it off), `late` (its data is behind its expected
latency) or `ok`. Thresholds come from the meter's XML (`latencyHours`, `silentAfterHours`) or
its connector's defaults. `since` is when the state began: for silent and late, the end of the
meter's last hour of data (or when it was first seen, if it never had any).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from meterflow.common.timeutil import warehouse_time
from meterflow.configuration.config import Meter, Participant
from meterflow.warehouse.backend import Warehouse
from meterflow.warehouse.schema import TABLES, TYPES

FAILING_AFTER = 3  # failed executions in a row
HOUR = timedelta(hours=1)
COLUMNS = TABLES["meter_health"].column_names


@dataclass(frozen=True)
class Thresholds:
    latency: timedelta  # how far behind the clock its data normally is
    silent_after: timedelta  # no new data for longer than this: silent

    @classmethod
    def of(cls, meter: Meter, latency: timedelta, silent_after: timedelta) -> Thresholds:
        """The meter's own thresholds where its XML sets them, else its connector's."""
        own = meter.latency_hours, meter.silent_after_hours
        return cls(
            timedelta(hours=own[0]) if own[0] else latency,
            timedelta(hours=own[1]) if own[1] else silent_after,
        )


def last_data(wh: Warehouse, participant_id: str, as_of: datetime) -> dict[str, pd.Timestamp]:
    """The latest hour (UTC, naive) before `as_of` each of the participant's meters has a
    reading for (a forecast's hours ahead are not news of the meter)."""
    rows = wh.query(
        f"SELECT meter_id, max(hour_utc) AS last_hour FROM {wh.table('fact_meter_hourly')} "
        "WHERE participant_id = ? AND value IS NOT NULL AND hour_utc < ? GROUP BY meter_id",
        [participant_id, warehouse_time(as_of)],
    )
    return dict(zip(rows["meter_id"], pd.to_datetime(rows["last_hour"]), strict=True))


def current(wh: Warehouse, participant_id: str | None = None) -> pd.DataFrame:
    """Every meter's health as of its latest dispatch (of one participant, or all)."""
    text = TYPES[wh.dialect]["text"]
    return wh.query(
        f"SELECT * FROM {wh.table('meter_health')} WHERE CAST(? AS {text}) IS NULL "
        "OR participant_id = ? ORDER BY participant_id, meter_id",
        [participant_id, participant_id],
    )


def previous(wh: Warehouse, participant_id: str) -> dict[str, dict]:
    rows = wh.query(
        f"SELECT * FROM {wh.table('meter_health')} WHERE participant_id = ?", [participant_id]
    )
    return {row["meter_id"]: row for row in rows.to_dict("records")}


def evaluate(
    participant: Participant,
    thresholds: dict[str, Thresholds],
    data_until: dict[str, pd.Timestamp],
    runs: dict[str, tuple[str, str | None]],
    before: dict[str, dict],
    as_of: datetime,
) -> pd.DataFrame:
    """Each meter's health as of `as_of` (UTC): `runs` holds this dispatch's execution status
    and error per meter it ran (done, failed, quarantined, deferred), `before` the previous
    health rows, `data_until` the latest hour with a reading."""
    now = pd.Timestamp(as_of).tz_convert("UTC").tz_localize(None)
    rows = []
    for meter in participant.meters:
        old = before.get(meter.id, {})
        status, error = runs.get(meter.id, (None, None))
        failed_runs = int(old.get("failed_runs", 0) or 0)
        if status == "failed":
            failed_runs += 1
        elif status in ("done", "quarantined"):
            failed_runs = 0
        first_seen = old.get("first_seen_utc") or now
        last = data_until.get(meter.id)
        data_end = last + HOUR if last is not None and pd.notna(last) else None
        behind = now - (data_end if data_end is not None else first_seen)
        limits = thresholds[meter.id]
        kept = old.get("state") if status is None else None  # a meter this run did not touch
        if failed_runs >= FAILING_AFTER:
            state = "failing"
        elif behind > limits.silent_after:
            state = "silent"
        elif status == "quarantined" or (kept == "quarantined"):
            state = "quarantined"
        elif status == "deferred" or (kept == "deferred"):
            state = "deferred"
        elif behind > limits.latency:
            state = "late"
        else:
            state = "ok"
        if state in ("silent", "late"):
            since = data_end if data_end is not None else first_seen
        elif state == old.get("state"):
            since = old.get("since_utc")
        else:
            since = now
        rows.append(
            {
                "participant_id": participant.id,
                "meter_id": meter.id,
                "property_id": meter.property_id,
                "state": state,
                "since_utc": since,
                "last_data_utc": last,
                "failed_runs": failed_runs,
                "last_error": error if error else (old.get("last_error") if failed_runs else None),
                "first_seen_utc": first_seen,
                "evaluated_utc": now,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


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
    first = pd.Timestamp(start).tz_convert("UTC").tz_localize(None)
    last = pd.Timestamp(end).tz_convert("UTC").tz_localize(None)
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
