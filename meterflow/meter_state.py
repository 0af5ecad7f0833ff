"""What the platform remembers about one meter between collections (`ledger/<meter>.json`):

- `made_with`: the configuration and connector version its stored hours were standardised with,
  so that a configuration change re-standardises the meter from its archive;
- `settled`: spans of hours that are final although incomplete. A source that back-fills (a
  device buffering through an outage) may still fill an hour in until `settle` after it; once a
  fetch has covered the hour and the source had data at least `settle` past it, what is missing
  stays missing (kept with its coverage and quality) and the hour is not fetched again unless a
  rerun forces it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from meterflow.config import Meter
from meterflow.storage import Storage
from meterflow.timeutil import HourWindow, merge_windows


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


def state_key(meter: Meter) -> str:
    return f"ledger/{meter.id}.json"


def read_state(storage: Storage, meter: Meter) -> MeterState:
    key = state_key(meter)
    if not storage.exists(key):
        return MeterState()
    body = json.loads(storage.read(key))
    settled = [HourWindow.parse(start, end) for start, end in body.get("settled", [])]
    return MeterState(body.get("made_with"), settled)


def write_state(storage: Storage, meter: Meter, state: MeterState) -> None:
    body = {
        "made_with": state.made_with,
        "settled": [[w.start.isoformat(), w.end.isoformat()] for w in state.settled],
    }
    storage.write(state_key(meter), json.dumps(body, sort_keys=True).encode())
