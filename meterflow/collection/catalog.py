"""The participant's catalog: what the platform knows of its storage between collections.

One object per month, `state/catalog/<yyyy-mm>.zip`, written by the flow that ran a collection
(the one writer of a participant's catalog and day files) and only when something changed:

- `payloads.parquet`: the raw log's index, one row per payload fetched that month: meter, sha256,
  source, span of its data, status, and where it is (run object and row), so a collection finds the
  archived payloads it needs (to difference registers across files, to drop records it holds
  already, to re-standardise a meter) without reading every run;
- `state.json`, as of the latest month: per meter the configuration its hours were made with and
  the spans of hours that are final although incomplete (settled); the export files seen (size,
  version, sha256), so an unchanged file is not read again; the collection runs merged, with the
  hours each changed, so loads lost with their flow are done by the next one.

An incomplete hour settles when the source had a fair chance to fill it: a fetch covered it and
the source had data at least its settle time past it. It is then kept with its coverage and
quality and not fetched again unless a rerun forces it.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from meterflow.collection.rawlog import PAYLOAD_SCHEMA, RunReader, zipped
from meterflow.common.errors import MeterflowError
from meterflow.common.frames import from_arrow, to_arrow
from meterflow.common.storage import Storage
from meterflow.common.timeutil import HourWindow, merge_windows

PREFIX = "state/catalog/"
INDEX_SCHEMA = pa.schema(
    [f for f in PAYLOAD_SCHEMA if f.name != "data"]
    + [pa.field("run_key", pa.string()), pa.field("row", pa.int64()), pa.field("seq", pa.int64())]
)
_NO_PAYLOADS = from_arrow(INDEX_SCHEMA.empty_table())


@dataclass
class MeterState:
    made_with: str | None = None
    settled: list[HourWindow] = field(default_factory=list)

    def settle(self, window: HourWindow) -> None:
        self.settled = merge_windows([*self.settled, window])

    def settled_hours(self, window: HourWindow) -> pd.DatetimeIndex:
        """The hours of `window` that are final."""
        hours = window.hours()
        final = pd.Series(False, index=hours)
        for span in self.settled:
            final |= (hours >= span.start) & (hours < span.end)
        return hours[final.to_numpy()]


@dataclass
class Catalog:
    meters: dict[str, MeterState] = field(default_factory=dict)
    sources: dict[str, dict] = field(default_factory=dict)
    runs: list[dict] = field(default_factory=list)
    payloads: pd.DataFrame = field(default_factory=lambda: from_arrow(INDEX_SCHEMA.empty_table()))
    months: list[str] = field(default_factory=list)  # the month files whose payloads are read
    complete: bool = False  # every month's payloads read (for a full re-standardisation)

    def meter(self, meter_id: str) -> MeterState:
        return self.meters.setdefault(meter_id, MeterState())

    @property
    def next_seq(self) -> int:
        return max((run["seq"] for run in self.runs), default=0) + 1

    def has(self, meter_id: str, sha256: str) -> bool:
        p = self.payloads
        return bool(((p["meter_id"] == meter_id) & (p["sha256"] == sha256)).any())

    def payloads_of(self, meter_id: str, start=None, end=None) -> pd.DataFrame:
        """A meter's accepted payloads whose data overlaps [start, end) (all if no bounds),
        oldest first: a later one wins where two give the same reading."""
        mine = self._accepted().get(meter_id, _NO_PAYLOADS)
        if start is not None and not mine.empty:
            mine = mine[(mine["span_start"] < end) & (mine["span_end"] > start)]
        return mine

    def payloads_within(self, ranges: pd.DataFrame) -> pd.DataFrame:
        """The accepted payloads whose data overlaps each meter's [start, end) in `ranges`
        (columns meter_id, start, end), oldest first: one selection for a whole shard."""
        p = self.payloads
        asked = ranges[["meter_id", "start", "end"]].rename(
            columns={"start": "_from", "end": "_to"}
        )
        both = p[p["status"] == "accepted"].merge(asked, on="meter_id")
        inside = (both["span_start"] < both["_to"]) & (both["span_end"] > both["_from"])
        return both[inside].drop(columns=["_from", "_to"]).sort_values(["seq", "row"])

    def _accepted(self) -> dict[str, pd.DataFrame]:
        """Accepted payloads by meter, oldest first (split once per index, not per meter)."""
        if getattr(self, "_split", (None,))[0] is not self.payloads:
            p = self.payloads
            accepted = p[p["status"] == "accepted"].sort_values(["seq", "row"])
            self._split = (self.payloads, dict(tuple(accepted.groupby("meter_id", sort=False))))
        return self._split[1]


def index_rows(entries: list[dict]) -> pd.DataFrame:
    """Index rows kept as JSON (a run's readmitted payloads) typed as the index is."""
    frame = pd.DataFrame(entries, columns=INDEX_SCHEMA.names)
    for f in INDEX_SCHEMA:
        if pa.types.is_timestamp(f.type):
            frame[f.name] = pd.to_datetime(frame[f.name], utc=True)
    return from_arrow(to_arrow(frame, INDEX_SCHEMA))


def archived(storage: Storage, meter_id: str) -> list[dict]:
    """Every payload archived for a meter, oldest first: its catalog row and its bytes."""
    catalog, reader = read_catalog(storage, everything=True), RunReader(storage)
    rows = catalog.payloads[catalog.payloads["meter_id"] == meter_id].sort_values(["seq", "row"])
    return [{**r, "data": reader.data(r["run_key"], r["row"])} for r in rows.to_dict("records")]


def state_json(catalog: Catalog) -> dict:
    return {
        "meters": {
            m: {
                "made_with": s.made_with,
                "settled": [[w.start.isoformat(), w.end.isoformat()] for w in s.settled],
            }
            for m, s in sorted(catalog.meters.items())
        },
        "sources": dict(sorted(catalog.sources.items())),
        "runs": catalog.runs,
    }


def read_catalog(storage: Storage, everything: bool = False) -> Catalog:
    """The latest state, with the payload index of the last two months (or of all of them)."""
    keys = storage.list(PREFIX)
    catalog = Catalog()
    if not keys:
        if storage.list("ledger/"):  # the per-meter layout: its data would look absent
            raise MeterflowError(
                f"participant {storage.participant_id}: its storage is in the per-meter layout "
                "of Meterflow before 0.2; convert it with `meterflow migrate-storage "
                f"--participant {storage.participant_id}`"
            )
        catalog.complete = True
        return catalog
    members = _members(storage, keys[-1])
    state = json.loads(members["state.json"])
    catalog.meters = {
        m: MeterState(s["made_with"], [HourWindow.parse(a, b) for a, b in s["settled"]])
        for m, s in state["meters"].items()
    }
    catalog.sources, catalog.runs = state["sources"], state["runs"]
    wanted = keys if everything else keys[-2:]
    frames = [_index(members if k == keys[-1] else _members(storage, k)) for k in wanted]
    catalog.payloads = pd.concat(frames, ignore_index=True)
    catalog.months = [_month_of(k) for k in wanted]
    catalog.complete = everything or len(keys) <= 2
    return catalog


def read_everything(storage: Storage, catalog: Catalog) -> Catalog:
    """The catalog with every month's payloads (once: a full re-standardisation needs them)."""
    return catalog if catalog.complete else read_catalog(storage, everything=True)


def write_catalog(storage: Storage, before: Catalog, after: Catalog, now: datetime) -> bool:
    """Write the month files whose content changed; False if nothing did."""
    month = f"{now:%Y-%m}"
    index = after.payloads
    months = sorted({month, *index["fetched_at"].dt.strftime("%Y-%m").unique()})
    state = json.dumps(state_json(after), sort_keys=True).encode()
    wrote = False
    for m in months:
        rows = index[index["fetched_at"].dt.strftime("%Y-%m") == m]
        old = before.payloads[before.payloads["fetched_at"].dt.strftime("%Y-%m") == m]
        is_latest = m == months[-1]
        if not is_latest and len(rows) == len(old):
            continue  # an earlier month: only its payloads live there, and they did not change
        members = {"payloads.parquet": _index_bytes(rows)}
        if is_latest:
            members["state.json"] = state
        data = zipped(members)
        key = f"{PREFIX}{m}.zip"
        if not storage.exists(key) or storage.read(key) != data:
            storage.write(key, data)
            wrote = True
    return wrote


def _members(storage: Storage, key: str) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(storage.read(key))) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _index(members: dict[str, bytes]) -> pd.DataFrame:
    return from_arrow(pq.read_table(io.BytesIO(members["payloads.parquet"])))


def _index_bytes(rows: pd.DataFrame) -> bytes:
    table = to_arrow(rows.sort_values(["seq", "row"]), INDEX_SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _month_of(key: str) -> str:
    return key.removeprefix(PREFIX).removesuffix(".zip")
