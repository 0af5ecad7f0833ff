"""Connectors fed by files that a meter's owner drops into their own storage."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import ClassVar

from meterflow.collection import rawlog
from meterflow.collection.rawlog import Payload
from meterflow.common.storage import Entry, Storage
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.config import Meter


class FileConnector:
    """Looks at every file under the meter's folder on each dispatch. Export folders are the
    participant's own and are left as they are: a file read before and unchanged since is not
    read again, and the content hash tells a changed file from one only touched. An inbox is
    consumed (each file leaves once archived or quarantined).

    Whatever an outsider put there becomes a payload, so that nothing blocks the meter or stays
    unseen: a name that is not a valid storage key, a symbolic link (recorded, never followed)
    or something that is not a regular file is refused before it is parsed, and quarantined."""

    version: ClassVar[str] = "1"
    polls: ClassVar[bool] = True
    settle: ClassVar[timedelta] = timedelta(0)
    # Meter health defaults (exports arrive about daily): data this far behind is
    # late, this long without new data silent (an alert); a meter's XML may set its own.
    latency: ClassVar[timedelta] = timedelta(days=1)
    silent_after: ClassVar[timedelta] = timedelta(days=3)
    consume: ClassVar[bool] = False

    def folder(self, meter: Meter) -> str:
        return meter.connector.path

    def fetch(
        self,
        storage: Storage,
        meter: Meter,
        window: HourWindow,
        now: datetime,
        seen: dict[str, dict] | None = None,
    ) -> list[Payload]:
        """Every entry of the folder, except export files read before and unchanged since
        (same size and version: mtime, ETag or generation), which are not read again."""
        seen = seen or {}
        payloads = []
        for entry in storage.scan(self.folder(meter)):
            source = f"{storage.participant_id}:{entry.name}"
            known = seen.get(source, {})
            if not self.consume and (known.get("size"), known.get("version")) == (
                entry.size,
                entry.version,
            ):
                continue
            payloads.append(self._payload(storage, entry, source))
        return payloads

    def _payload(self, storage: Storage, entry: Entry, source: str) -> Payload:
        found = {
            "source": source,
            "name": entry.name.rsplit("/", 1)[-1],
            "consumed": entry if self.consume else None,
            "seen": None if self.consume else {"size": entry.size, "version": entry.version},
        }
        if entry.kind != "file":
            what = "a symbolic link" if entry.kind == "link" else "not a regular file"
            return Payload(
                data=_described(entry),
                refused=f"{what}: not read; deliver the file itself",
                **found,
            )
        try:
            if entry.key is not None and entry.size > rawlog.LARGE:  # streamed, never whole
                with storage.open(entry.key) as stream:
                    return Payload(data=b"", stored=rawlog.archive_stream(storage, stream), **found)
            data = storage.read_entry(entry)
        except OSError as exc:  # left where it is: what cannot be read cannot be moved safely
            found["consumed"] = None
            return Payload(data=_described(entry), refused=f"cannot be read: {exc}", **found)
        if entry.key is None:
            return Payload(
                data=data,
                refused=f"file name {entry.name.rsplit('/', 1)[-1]!r} is not allowed: use "
                "letters, digits, '-', '_', '.', '=' or '+', not starting with a dot",
                **found,
            )
        return Payload(data=data, **found)


def _described(entry: Entry) -> bytes:
    """What stands in for an entry's bytes when they are not read (a link is never followed)."""
    described = {"name": entry.name, "kind": entry.kind, "target": entry.target}
    return json.dumps(described, sort_keys=True).encode()
