"""Backfills in chunks that are recorded when done, so an interrupted backfill resumes.

The record lives in the platform's state folder, keyed by what was asked (participant, meters,
span, force_override): running the same backfill again does only the chunks not yet done.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

from meterflow.timeutil import HourWindow


def chunks(window: HourWindow, days: int) -> list[HourWindow]:
    """The window cut into spans of at most `days` days."""
    step, out, start = timedelta(days=days), [], window.start
    while start < window.end:
        out.append(HourWindow(start, min(start + step, window.end)))
        start += step
    return out


class BackfillRecord:
    """Which chunks of one backfill are done."""

    def __init__(
        self,
        state_dir: Path,
        participant_id: str,
        meter_ids: list[str] | None,
        window: HourWindow,
        force_override: bool,
    ):
        asked = json.dumps(
            [participant_id, sorted(meter_ids or []), str(window), force_override]
        ).encode()
        self.path = state_dir / "backfills" / f"{hashlib.sha256(asked).hexdigest()[:16]}.json"

    def done(self) -> set[str]:
        return set(json.loads(self.path.read_text())["done"]) if self.path.exists() else set()

    def mark(self, chunk: HourWindow) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        done = sorted(self.done() | {str(chunk)})
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"done": done}, indent=1))
        tmp.replace(self.path)

    def pending(self, window: HourWindow, days: int) -> list[HourWindow]:
        done = self.done()
        return [c for c in chunks(window, days) if str(c) not in done]
