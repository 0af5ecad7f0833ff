"""`wattwatchers`: Wattwatchers API v3 long-energy, 5-minute energy per channel.

Facts the code relies on (shared/reference/apis.md): `fromTs` inclusive and `toTs` exclusive in
Unix seconds, at most 7 days per 5-minute call; each record's `timestamp` marks the END of its
interval; energy in Joules as arrays aligned with the channel list of `GET /devices/{id}`;
204 means the device never had data and `[]` means none in the window (neither is an error);
devices back-fill up to ~6 h after an outage, so the last hours are re-fetched until settled.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import ClassVar

import pandas as pd

from meterflow.collection.rawlog import Payload
from meterflow.common.errors import SourceDataError
from meterflow.common.http import HttpClient
from meterflow.common.storage import Storage
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.config import Meter
from meterflow.standardisation.readings import SourceReadings

PAGE = 7 * 24 * 3600  # the API's limit for 5-minute data


class WattwatchersConnector:
    type: ClassVar[str] = "wattwatchers"
    version: ClassVar[str] = "1"
    polls: ClassVar[bool] = False
    settle: ClassVar[timedelta] = timedelta(hours=6)
    # Meter health defaults (devices report every 5 minutes): data this far behind is
    # late, this long without new data silent (an alert); a meter's XML may set its own.
    latency: ClassVar[timedelta] = timedelta(hours=2)
    silent_after: ClassVar[timedelta] = timedelta(hours=4)

    def __init__(self, client: HttpClient, base_url: str):
        self.client, self.base_url = client, base_url.rstrip("/")

    def fetch(
        self,
        storage: Storage,
        meter: Meter,
        window: HourWindow,
        now: datetime,
        seen: dict[str, dict] | None = None,
    ) -> list[Payload]:
        device_id = meter.connector.device
        device = self.client.get(f"{self.base_url}/devices/{device_id}").json()
        # Records are stamped at interval end: hour [start, end) needs stamps in (start, end].
        first, last = int(window.start.timestamp()) + 1, int(window.end.timestamp()) + 1
        payloads = []
        for page_start in range(first, last, PAGE):
            page_end = min(page_start + PAGE, last)
            response = self.client.get(
                f"{self.base_url}/long-energy/{device_id}",
                params={"fromTs": page_start, "toTs": page_end, "granularity": "5m"},
                ok=(200, 204),
            )
            records = response.json() if response.status_code == 200 else []
            if not records:
                continue
            source = self.client.redact_url(response.url)
            envelope = {"url": source, "device": device, "records": records}
            payloads.append(
                Payload(
                    name=f"long-energy-{device_id}-{page_start}-{page_end}.json",
                    data=json.dumps(envelope, sort_keys=True).encode(),
                    source=source,
                )
            )
        return payloads

    def parse(self, data: bytes, name: str, meter: Meter) -> SourceReadings:
        return parse_long_energy(data, meter.connector.channels, meter.connector.quantity)

    # The raw log keeps each 5-minute record once, however the fetches were paged.
    def split_records(self, data: bytes) -> tuple[dict, list[dict]]:
        envelope = json.loads(data)
        return {k: v for k, v in envelope.items() if k != "records"}, envelope["records"]

    def join_records(self, envelope: dict, records: list[dict]) -> bytes:
        return json.dumps({**envelope, "records": records}, sort_keys=True).encode()

    def record_key(self, record: dict) -> str:
        return f"{record.get('timestamp')}/{record.get('duration', 300)}"


def select_channels(channels: list[dict], selectors: tuple[str, ...]) -> list[int]:
    """Positions of the channels named by id (C1 or full id), label or category label."""
    positions = []
    for selector in selectors:
        wanted = selector.casefold()
        matches = [
            i
            for i, channel in enumerate(channels)
            if wanted
            in {
                str(channel.get("id", "")).casefold(),
                str(channel.get("id", "")).rsplit("_", 1)[-1].casefold(),
                str(channel.get("label", "")).casefold(),
                str(channel.get("categoryLabel", "")).casefold(),
            }
        ]
        if not matches:
            names = ", ".join(f"{c.get('id')} ({c.get('label')})" for c in channels)
            raise SourceDataError(f"no channel matches {selector!r}; the device has {names}")
        positions += [i for i in matches if i not in positions]
    return positions


def parse_long_energy(data: bytes, selectors: tuple[str, ...], quantity: str) -> SourceReadings:
    """Interval energy (J) of the selected channels summed, from one archived response."""
    envelope = json.loads(data)
    positions = select_channels(envelope["device"]["channels"], selectors)
    rows = []
    for record in envelope["records"]:
        values = record.get(quantity)
        if values is None:
            raise SourceDataError(f"record at {record.get('timestamp')} has no {quantity}")
        end = pd.Timestamp(record["timestamp"], unit="s", tz="UTC")
        start = end - pd.Timedelta(seconds=record.get("duration", 300))
        rows.append((start, end, float(sum(values[i] for i in positions)), "measured"))
    frame = pd.DataFrame(rows, columns=["start", "end", "value", "quality"])
    return SourceReadings("interval", "J", frame)
