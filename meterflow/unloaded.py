"""Spans of hours stored but not yet loaded into the warehouse: a small outbox in the
participant's storage.

Collection writes a mark for every span it changed; the dispatcher loads every marked span and
then removes the marks it loaded. So a load lost with its dispatcher (a killed worker) or never
asked for (an on-demand `collect` run) is done by the next dispatch, and a rerun that finds no
hour to collect still finds the hours to load.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from meterflow.storage import Storage
from meterflow.timeutil import HourWindow

PREFIX = "state/unloaded/"


def mark(storage: Storage, window: HourWindow) -> str:
    """Record that `window` changed; each mark has its own key, so marks never overwrite."""
    key = f"{PREFIX}{window.start:%Y%m%dT%H}-{window.end:%Y%m%dT%H}-{uuid.uuid4().hex}.json"
    body = {"start": window.start.isoformat(), "end": window.end.isoformat()}
    storage.write(key, json.dumps(body).encode())
    return key


def marks(storage: Storage) -> dict[str, HourWindow]:
    """Every mark not yet loaded: key -> span."""
    found = {}
    for key in storage.list(PREFIX):
        body = json.loads(storage.read(key))
        start, end = datetime.fromisoformat(body["start"]), datetime.fromisoformat(body["end"])
        found[key] = HourWindow(start, end)
    return found


def unmark(storage: Storage, keys: list[str]) -> None:
    """Remove marks whose spans are loaded (only those read before the load began)."""
    for key in keys:
        storage.delete(key)
