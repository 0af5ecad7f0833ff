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
export's bytes over and over. A connector that can stream such a payload archives it as it
downloads it (`archive_stream`), so its bytes are never held whole in memory; it is then parsed
from the object. The participant's catalog (meterflow.collection.catalog) indexes the payloads by
meter and span.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from meterflow.common.frames import from_arrow, to_arrow
from meterflow.common.storage import Entry, Storage

PREFIX = "raw/"
LARGE = 4 * 1024 * 1024  # bytes: a payload this large is archived as an object of its own
CHUNK = 1024 * 1024  # bytes of a streamed payload read at a time
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
class Stored:
    """A payload's bytes archived already as an object of their own (see object_key)."""

    sha256: str
    size: int


@dataclass(frozen=True)
class Payload:
    """What a connector fetched: the bytes (or, for a streamed one, where they are archived), a
    name, and where they came from (no secrets)."""

    name: str
    data: bytes
    source: str
    consumed: Entry | None = None  # an inbox entry to remove once the payload is safe
    refused: str | None = None  # why it is refused before it is parsed (a link, a bad name)
    seen: dict | None = None  # an export file's size and version, so an unchanged one is skipped
    stored: Stored | None = None  # streamed into the raw log as it was fetched (`data` is b"")

    @cached_property  # asked several times per payload on its way through a run
    def sha(self) -> str:
        return self.stored.sha256 if self.stored else hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return self.stored.size if self.stored else len(self.data)

    def open(self, storage: Storage) -> BinaryIO:
        """The bytes as a stream, read from their object when they were streamed there."""
        return storage.open(object_key(self.sha)) if self.stored else io.BytesIO(self.data)

    def read(self, storage: Storage) -> bytes:
        """The bytes whole (for what needs them so: an API reply, a quarantined copy of a small
        payload)."""
        return storage.read(object_key(self.sha)) if self.stored else self.data

    def chunks(self, storage: Storage) -> Iterator[bytes]:
        """The bytes in chunks, never all at once."""
        with self.open(storage) as stream:
            yield from chunked(stream)


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
                "bytes": payload.size,
                "status": "rejected" if error else "accepted",
                "error": error,
                "span_start": span[0] if span else None,
                "span_end": span[1] if span else None,
                "records_fetched": records_fetched,
                "made_with": made_with,
                "data": None if payload.stored else payload.data,
            }
        )
        return len(self.rows) - 1

    def write(self, storage: Storage, hours: pd.DataFrame, manifest: dict) -> str:
        """Write the run: its payloads, the hours it made and its manifest, in one object (the
        bytes of large payloads first, each in an object of its own)."""
        rows = []
        for row in self.rows:
            if row["data"] is not None and len(row["data"]) > LARGE:
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
            "hours.parquet": _parquet(to_arrow(hours)),
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

    def payload(self, row: int) -> Payload:
        """The archived payload: its bytes, or where they are when they are an object of their
        own (read them with `Payload.open`, `read` or `chunks`)."""
        name, source, sha, size, data = (
            self.payloads.column(c)[row].as_py()
            for c in ("name", "source", "sha256", "bytes", "data")
        )
        if data is None:
            return Payload(name, b"", source, stored=Stored(sha, size))
        return Payload(name, data, source)

    def data(self, storage: Storage, row: int) -> bytes:
        """The payload's bytes as fetched, from the run or from its own object."""
        return self.payload(row).read(storage)


def object_key(sha256: str) -> str:
    """Where a large payload's bytes are: one object per content, never rewritten."""
    return f"{PREFIX}objects/{sha256[:2]}/{sha256}"


def chunked(stream: BinaryIO) -> Iterator[bytes]:
    """A stream's bytes, CHUNK at a time."""
    while chunk := stream.read(CHUNK):
        yield chunk


def archive_stream(storage: Storage, stream: BinaryIO) -> Stored:
    """Archive a stream's bytes as they arrive as an object of their own, never holding them
    whole: they are written under a staging key while their hash is taken, then moved to their
    content's key (or dropped there if the log holds that content already)."""
    digest, size = hashlib.sha256(), 0

    def counted() -> Iterator[bytes]:
        nonlocal size
        for chunk in chunked(stream):
            digest.update(chunk)
            size += len(chunk)
            yield chunk

    staging = f"{PREFIX}objects/incoming/{uuid.uuid4().hex}"
    storage.write_stream(staging, counted())
    stored = Stored(digest.hexdigest(), size)
    if storage.exists(object_key(stored.sha256)):
        storage.delete(staging)
    else:
        storage.move(staging, object_key(stored.sha256))
    return stored


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

    def payload(self, key: str, row: int) -> Payload:
        return self.run(key).payload(row)

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
