"""The immutable raw log: every payload a source gave, kept as fetched, with fetch metadata.

One object per collection run (a shard of meters), `raw/<yyyy>/<mm>/<dd>/<HHMMSSffffff>-<id>.zip`,
never rewritten, holding

- `payloads.parquet`: one row per payload: meter, name, source (no secrets), fetch time, sha256,
  size, status (accepted or rejected, and why), the UTC span of its data, how many records the
  source returned, the meter configuration that judged it, and the bytes as fetched;
- `hours.parquet`: the meter-hours the run made of them, with their ledger columns;
- `manifest.json`: the run, its meters and window, and what it learnt of them (settled hours,
  configurations, export files seen), so a flow lost before it merged the run can be finished.

A run writes one object however many meters and payloads it has: O(runs), not O(meters x days).
A payload larger than LARGE (a big export) is the exception: its bytes are an object of their own,
`raw/objects/<sha256[:2]>/<sha256>`, written once, as fetched, before the run that names it (its
row's `data` is then null); a run object stays small, and writing or merging it does not copy the
export's bytes over and over. The participant's catalog (meterflow.collection.catalog) indexes the
payloads by meter and span.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from meterflow.common.storage import Entry, Storage
from meterflow.standardisation.readings import from_arrow

PREFIX = "raw/"
LARGE = 4 * 1024 * 1024  # bytes: a payload this large is archived as an object of its own
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=+-]+")
PAYLOAD_SCHEMA = pa.schema(
    [
        ("meter_id", pa.string()),
        ("name", pa.string()),
        ("source", pa.string()),
        ("fetched_at", pa.timestamp("us", tz="UTC")),
        ("sha256", pa.string()),
        ("bytes", pa.int64()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("span_start", pa.timestamp("us", tz="UTC")),
        ("span_end", pa.timestamp("us", tz="UTC")),
        ("records_fetched", pa.int64()),
        ("made_with", pa.string()),
        ("data", pa.binary()),
    ]
)


@dataclass(frozen=True)
class Payload:
    """What a connector fetched: the bytes, a name, and where they came from (no secrets)."""

    name: str
    data: bytes
    source: str
    consumed: Entry | None = None  # an inbox entry to remove once the payload is safe
    refused: str | None = None  # why it is refused before it is parsed (a link, a bad name)
    seen: dict | None = None  # an export file's size and version, so an unchanged one is skipped

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def safe_name(name: str) -> str:
    """A payload name reduced to characters that are safe in a storage key."""
    return _UNSAFE.sub("_", name.rsplit("/", 1)[-1]).strip("._") or "payload"


@dataclass
class RunWriter:
    """The payloads one collection run archives, written as one object when the run ends."""

    started: datetime
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    rows: list[dict] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{PREFIX}{self.started:%Y/%m/%d/%H%M%S%f}-{self.run_id}.zip"

    def add(
        self,
        meter_id: str,
        payload: Payload,
        span: tuple[datetime, datetime] | None,
        fetched_at: datetime,
        made_with: str,
        error: str | None = None,
        records_fetched: int | None = None,
    ) -> int:
        """Archive a payload in this run; its row number in the run."""
        self.rows.append(
            {
                "meter_id": meter_id,
                "name": payload.name,
                "source": payload.source,
                "fetched_at": fetched_at,
                "sha256": payload.sha,
                "bytes": len(payload.data),
                "status": "rejected" if error else "accepted",
                "error": error,
                "span_start": span[0] if span else None,
                "span_end": span[1] if span else None,
                "records_fetched": records_fetched,
                "made_with": made_with,
                "data": payload.data,
            }
        )
        return len(self.rows) - 1

    def write(self, storage: Storage, hours: pd.DataFrame, manifest: dict) -> str:
        """Write the run: its payloads, the hours it made and its manifest, in one object (the
        bytes of large payloads first, each in an object of its own)."""
        rows = []
        for row in self.rows:
            if len(row["data"]) > LARGE:
                key = object_key(row["sha256"])
                if not storage.exists(key):
                    storage.write(key, row["data"])
                row = {**row, "data": None}
            rows.append(row)
        payloads = pa.Table.from_pylist(rows, schema=PAYLOAD_SCHEMA)
        members = {
            # Uncompressed, not dictionary-encoded: each payload's bytes lie in the object as
            # fetched, so a search of the bucket (for a leaked key, say) sees them.
            "payloads.parquet": _parquet(payloads, compression="none", use_dictionary=False),
            "hours.parquet": _parquet(pa.Table.from_pandas(hours, preserve_index=False)),
            "manifest.json": json.dumps(
                {"run": self.run_id, **manifest}, sort_keys=True, default=str
            ).encode(),
        }
        storage.write(self.key, zipped(members))
        return self.key


@dataclass(frozen=True)
class RunFile:
    key: str
    payloads: pa.Table
    hours: pd.DataFrame
    manifest: dict

    def data(self, storage: Storage, row: int) -> bytes:
        """The payload's bytes as fetched, from the run or from its own object."""
        data = self.payloads.column("data")[row].as_py()
        if data is None:
            return storage.read(object_key(self.payloads.column("sha256")[row].as_py()))
        return data


def object_key(sha256: str) -> str:
    """Where a large payload's bytes are: one object per content, never rewritten."""
    return f"{PREFIX}objects/{sha256[:2]}/{sha256}"


def read_run(storage: Storage, key: str, data: bool = True) -> RunFile:
    """A run object; without the payloads' bytes if `data` is False (merging needs only their
    metadata)."""
    columns = None if data else [f.name for f in PAYLOAD_SCHEMA if f.name != "data"]
    with zipfile.ZipFile(io.BytesIO(storage.read(key))) as archive:
        payloads = pq.read_table(io.BytesIO(archive.read("payloads.parquet")), columns=columns)
        hours = from_arrow(pq.read_table(io.BytesIO(archive.read("hours.parquet"))))
        manifest = json.loads(archive.read("manifest.json"))
    return RunFile(key, payloads, hours, manifest)


class RunReader:
    """Reads archived payloads, each run object once per collection (many meters share it)."""

    def __init__(self, storage: Storage):
        self.storage = storage
        self._runs: dict[str, RunFile] = {}

    def run(self, key: str) -> RunFile:
        if key not in self._runs:
            self._runs[key] = read_run(self.storage, key)
        return self._runs[key]

    def data(self, key: str, row: int) -> bytes:
        return self.run(key).data(self.storage, row)


def zipped(members: dict[str, bytes]) -> bytes:
    """A zip of the members with fixed timestamps: the same content gives the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


def _parquet(table: pa.Table, **options) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **options)
    return buffer.getvalue()
