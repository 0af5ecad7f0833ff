"""Backfills in chunks that are recorded when done, so an interrupted backfill resumes.

The record lives in the participant's own storage (`state/backfills/`), so it survives the
worker or Cloud Run job that wrote it; it is keyed by what was asked (participant, meters, span,
force_override): running the same backfill again does only the chunks not yet done.
"""

from __future__ import annotations

import hashlib
import json

from meterflow.common.storage import Storage
from meterflow.common.timeutil import HourWindow, chunks


class BackfillRecord:
    """Which chunks of one backfill are done."""

    def __init__(
        self,
        storage: Storage,
        meter_ids: list[str] | None,
        window: HourWindow,
        force_override: bool,
    ):
        asked = json.dumps(
            [storage.participant_id, sorted(meter_ids or []), str(window), force_override]
        ).encode()
        self.storage = storage
        self.key = f"state/backfills/{hashlib.sha256(asked).hexdigest()[:16]}.json"

    def done(self) -> set[str]:
        if not self.storage.exists(self.key):
            return set()
        return set(json.loads(self.storage.read(self.key))["done"])

    def mark(self, chunk: HourWindow) -> None:
        done = sorted(self.done() | {str(chunk)})
        self.storage.write(self.key, json.dumps({"done": done}, indent=1).encode())

    def pending(self, window: HourWindow, days: int) -> list[HourWindow]:
        done = self.done()
        return [c for c in chunks(window, days) if str(c) not in done]
