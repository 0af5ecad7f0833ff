"""Fetching for connectors fed by files that a meter's owner drops into their storage."""

from __future__ import annotations

from meterflow.rawlog import Payload
from meterflow.storage import Storage


def fetch_files(storage: Storage, prefix: str, *, consume: bool = False) -> list[Payload]:
    """Every file under `prefix`; the raw log's content hash tells which ones are new.

    Export folders are the participant's own and are left as they are; an inbox is consumed
    (each file is removed once it is archived or quarantined).
    """
    return [
        Payload(
            name=key.rsplit("/", 1)[-1],
            data=storage.read(key),
            source=f"{storage.participant_id}:{key}",
            consumed_key=key if consume else None,
        )
        for key in storage.list(prefix)
    ]
