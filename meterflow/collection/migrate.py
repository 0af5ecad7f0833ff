"""Convert a participant's storage from the per-meter layout (layout 1) to the columnar one.

Layout 1 kept one object per payload (`raw/<meter>/<yyyy>/<mm>/<dd>/<stamp>_<sha16>_<span>_<name>`
with a `.meta.json`), one file per meter and UTC day (`standardised/<type>/<meter>/<day>.parquet`),
one state file per meter (`ledger/<meter>.json`) and marks of hours not yet loaded
(`state/unloaded/`). The conversion writes one run object per fetch day holding that day's
payloads as they were fetched (same bytes, fetch times, sources, outcomes and spans), one day
file per data type and UTC day holding every meter's hours with their ledger columns, and the
catalog (meters' state, the payload index, and a run for each unloaded span so the next dispatch
loads it). The old objects are removed only once all of that is written; running it again on
converted storage does nothing.
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
import pyarrow.parquet as pq

from meterflow.collection.catalog import Catalog, MeterState, read_catalog, write_catalog
from meterflow.collection.collect import merge
from meterflow.collection.rawlog import Payload, RunWriter
from meterflow.common.errors import MeterflowError
from meterflow.common.storage import Storage
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.config import Participant
from meterflow.hours.hourly_store import DAY_COLUMNS, empty_day

_SPAN = "%Y%m%dT%H%M"


@dataclass(frozen=True)
class Migrated:
    participant: str
    payloads: int
    hours: int
    removed: int


def is_layout_1(storage: Storage) -> bool:
    """Whether the storage still holds the per-meter layout."""
    return bool(storage.list("ledger/")) or any(
        key.count("/") == 3 for key in storage.list("standardised/")
    )


def migrate(storage: Storage, participant: Participant, now: datetime | None = None) -> Migrated:
    """Convert the storage (see the module docstring); what it converted."""
    now = now or datetime.now(UTC)
    if not is_layout_1(storage):
        return Migrated(participant.id, 0, 0, 0)
    old = [k for k in storage.list("raw/") if k.count("/") >= 5 and not k.endswith(".meta.json")]
    meters = _meter_states(storage)
    runs = _raw_runs(storage, old, meters)
    hours, day_keys = _hours(storage, participant)
    # The hours go in through a run of their own, merged like any collection's.
    carrier = RunWriter(now)
    data_types = {m.id: m.data_type for m in participant.meters}
    data_types.update(dict(zip(hours["meter_id"], hours["data_type"], strict=True)))
    manifest = {
        "label": "migrated hours",
        "participant": participant.id,
        "meters": meters,
        "data_types": data_types,
        "sources": {},
        "readmitted": [],
    }
    keys = [*runs, carrier.write(storage, hours[DAY_COLUMNS], manifest)]
    ledgers = storage.list("ledger/")
    for key in ledgers:  # their content is in the run just written (they would stop the merge)
        storage.delete(key)
    merge(storage, participant, keys, now)
    _unloaded(storage, now)
    obsolete = [*old, *(k + ".meta.json" for k in old), *day_keys]
    obsolete += [*ledgers, *storage.list("state/unloaded/")]
    for key in obsolete:
        storage.delete(key)
    return Migrated(participant.id, len(old), len(hours), len(obsolete))


def _raw_runs(storage: Storage, keys: list[str], meters: dict[str, dict]) -> list[str]:
    """One run object per fetch day of the old raw log, payloads in fetch order (each judged
    by the configuration its meter's hours were last made with)."""
    by_day: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        year, month, day = key.split("/")[2:5]
        by_day[f"{year}-{month}-{day}"].append(key)
    written = []
    for day in sorted(by_day):
        entries = sorted(by_day[day], key=lambda k: k.rsplit("/", 1)[1])
        meta = [json.loads(storage.read(k + ".meta.json")) for k in entries]
        run = RunWriter(datetime.fromisoformat(meta[0]["fetched_at"]))
        for key, m in zip(entries, meta, strict=True):
            span_text = key.rsplit("/", 1)[1].split("_", 3)[2]
            span = None
            if span_text != "unparsed":
                first, last = span_text.split("-")
                span = tuple(datetime.strptime(t, _SPAN).replace(tzinfo=UTC) for t in (first, last))
            payload = Payload(m["name"], storage.read(key), m["source"])
            if payload.sha != m["sha256"]:
                raise MeterflowError(f"{storage.participant_id}: {key} does not match its sha256")
            run.add(
                m["meter"],
                payload,
                span,
                datetime.fromisoformat(m["fetched_at"]),
                meters.get(m["meter"], {}).get("made_with"),
                error=m.get("error"),
                records_fetched=m.get("records_fetched"),
            )
        manifest = {"label": f"migrated raw log {day}", "meters": {}, "data_types": {}}
        written.append(run.write(storage, empty_day(), {**manifest, "sources": {}}))
    return written


def _hours(storage: Storage, participant: Participant) -> tuple[pd.DataFrame, list[str]]:
    """Every meter's stored hours of the old day files, with meter and data type."""
    frames, keys = [], []
    for key in storage.list("standardised/"):
        parts = key.split("/")
        if len(parts) != 4:
            continue
        _, data_type, meter_id, _ = parts
        frame = pq.read_table(io.BytesIO(storage.read(key))).to_pandas()
        frame = frame.reindex(columns=[c for c in DAY_COLUMNS if c != "meter_id"])
        frames.append(frame.assign(meter_id=meter_id, data_type=data_type))
        keys.append(key)
    if not frames:
        return empty_day().assign(data_type=pd.Series([], dtype="str")), keys
    hours = pd.concat(frames, ignore_index=True)
    hours["hour_utc"] = pd.to_datetime(hours["hour_utc"], utc=True)
    return hours, keys


def _meter_states(storage: Storage) -> dict[str, dict]:
    states = {}
    for key in storage.list("ledger/"):
        body = json.loads(storage.read(key))
        states[key.removeprefix("ledger/").removesuffix(".json")] = {
            "made_with": body.get("made_with"),
            "settled": body.get("settled", []),
        }
    return states


def _unloaded(storage: Storage, now: datetime) -> None:
    """Old marks of hours stored but not loaded become runs the next dispatch loads."""
    spans = []
    for key in storage.list("state/unloaded/"):
        body = json.loads(storage.read(key))
        spans.append(HourWindow.parse(body["start"], body["end"]))
    if not spans:
        return
    before = read_catalog(storage)
    after = Catalog(
        {m: MeterState(s.made_with, list(s.settled)) for m, s in before.meters.items()},
        dict(before.sources),
        list(before.runs),
        before.payloads,
        before.months,
        before.complete,
    )
    for i, span in enumerate(spans):
        after.runs.append(
            {
                "run": f"migrated-unloaded-{i}",
                "key": f"state/unloaded/{i}",
                "seq": after.next_seq,
                "changed": [span.start.isoformat(), span.end.isoformat()],
                "merged": now.isoformat(),
            }
        )
    write_catalog(storage, before, after, now)
