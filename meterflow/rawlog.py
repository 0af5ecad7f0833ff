"""The immutable raw log: every payload a source gave, kept as fetched, with fetch metadata.

Keys are `raw/<meter>/<yyyy>/<mm>/<dd>/<hhmmssffffff>_<sha16>_<span>_<name>` (fetch time;
`span` is the data's UTC span, or `unparsed`), each with a `.meta.json` sidecar. The content hash
in the key makes archiving idempotent (the same bytes are never stored twice) and the span lets a
collection pick the payloads it needs from one listing, without reading them.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from meterflow.storage import Entry, Storage

_SPAN_FORMAT = "%Y%m%dT%H%M"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=+-]+")
META_SUFFIX = ".meta.json"


@dataclass(frozen=True)
class Payload:
    """What a connector fetched: the bytes, a name, and where they came from (no secrets)."""

    name: str
    data: bytes
    source: str
    consumed: Entry | None = None  # an inbox entry to remove once the payload is safe
    refused: str | None = None  # why it is refused before it is parsed (a link, a bad name)

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class RawRef:
    key: str
    sha16: str
    name: str
    span: tuple[datetime, datetime] | None

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.span is not None and self.span[0] < end and start < self.span[1]


class RawLog:
    """One meter's raw log, listed once when opened."""

    def __init__(self, storage: Storage, meter_id: str):
        self.storage, self.meter_id = storage, meter_id
        self.refs = [
            _ref(key) for key in storage.list(f"raw/{meter_id}/") if not key.endswith(META_SUFFIX)
        ]
        self._hashes = {ref.sha16 for ref in self.refs}

    def has(self, payload: Payload) -> bool:
        return payload.sha[:16] in self._hashes

    def add(
        self,
        payload: Payload,
        span: tuple[datetime, datetime] | None,
        fetched_at: datetime,
        error: str | None = None,
        records_fetched: int | None = None,
    ) -> RawRef:
        """Archive a payload once; its metadata records the source, time, size and outcome
        (and, for record payloads, how many records the source returned: those the raw log
        held already are not stored again)."""
        span_text = f"{span[0]:{_SPAN_FORMAT}}-{span[1]:{_SPAN_FORMAT}}" if span else "unparsed"
        name = self.safe_name(payload.name)
        stamp = f"{fetched_at:%Y/%m/%d/%H%M%S%f}"
        key = f"raw/{self.meter_id}/{stamp}_{payload.sha[:16]}_{span_text}_{name}"
        meta = {
            "meter": self.meter_id,
            "source": payload.source,
            "name": payload.name,
            "fetched_at": fetched_at.isoformat(),
            "sha256": payload.sha,
            "bytes": len(payload.data),
            "status": "rejected" if error else "accepted",
            "error": error,
        }
        if records_fetched is not None:
            meta["records_fetched"] = records_fetched
        self.storage.write(key, payload.data)
        self.storage.write(key + META_SUFFIX, json.dumps(meta, indent=2).encode())
        ref = _ref(key)
        self.refs.append(ref)
        self._hashes.add(ref.sha16)
        return ref

    @staticmethod
    def safe_name(name: str) -> str:
        """A payload name reduced to characters that are safe in a storage key."""
        return _UNSAFE.sub("_", name.rsplit("/", 1)[-1]).strip("._") or "payload"

    def overlapping(self, start: datetime, end: datetime) -> list[RawRef]:
        """Parsed payloads whose data overlaps [start, end), oldest fetch first."""
        return sorted((r for r in self.refs if r.overlaps(start, end)), key=lambda r: r.key)


def _ref(key: str) -> RawRef:
    _, sha16, span_text, name = key.rsplit("/", 1)[1].split("_", 3)
    span = None
    if span_text != "unparsed":
        first, last = span_text.split("-")
        span = (
            datetime.strptime(first, _SPAN_FORMAT).replace(tzinfo=UTC),
            datetime.strptime(last, _SPAN_FORMAT).replace(tzinfo=UTC),
        )
    return RawRef(key=key, sha16=sha16, name=name, span=span)
