"""`electricitymaps`: hourly carbon intensity of a grid zone, from the Electricity Maps API v3.

Electricity Maps (electricitymaps.com) was chosen because one API covers the grid zones of every
country it tracks (zone keys such as `DE`, `US-CAL-CISO` or `AUS-NSW`), with hourly history by
date range and a flag on every hour saying whether it is measured or estimated; a national source
covers one grid only (the UK NESO Carbon Intensity API, for one, covers Great Britain only).

Facts the code relies on: `GET /v3/carbon-intensity/past-range` takes `zone`, `start` and `end`
(UTC), `temporalGranularity=hourly` and `emissionFactorType` (`direct` or `lifecycle`), with the
token in the `auth-token` header (not `Authorization`); each record of `data` is the
carbonIntensity (gCO2eq/kWh) of the hour starting at its `datetime`; an hourly range may span at
most 10 days, so a longer window is asked for in pages of 10 days; hours the source lacks are
absent from `data` and stay missing (never zero). Recent hours are estimated (`isEstimated`) and
revised later: they are kept with quality "estimated", and the raw log keeps each hourly record
once, again only when the source revised it. An hour still missing or estimated stays due, so
the next dispatches ask for it again, until it is measured or the source had data `settle`
(2 days) past it.
"""

from __future__ import annotations

import json
import math
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

PATH = "/v3/carbon-intensity/past-range"
PAGE = timedelta(days=10)  # the API's limit for an hourly range
HOUR = timedelta(hours=1)
UNIT = "gCO2e/kWh"  # Electricity Maps' gCO2eq/kWh


class ElectricityMapsConnector:
    type: ClassVar[str] = "electricitymaps"
    version: ClassVar[str] = "1"
    polls: ClassVar[bool] = False
    # Estimates are revised within a day or two: a missing or estimated hour stays due that long
    # (meterflow.collection.plan), so hourly dispatches pick up the measured values by themselves.
    settle: ClassVar[timedelta] = timedelta(days=2)
    revises_estimates: ClassVar[bool] = True
    # Meter health defaults (the last hours arrive within the hour, as estimates): data this far
    # behind is late, this long without new data silent (an alert); a meter's XML may set its own.
    latency: ClassVar[timedelta] = timedelta(hours=6)
    silent_after: ClassVar[timedelta] = timedelta(days=2)
    # The header the API takes the key in (connectors.connector_for; others use Bearer).
    auth_header: ClassVar[str] = "auth-token"

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
        settings = meter.connector
        # Past hours only: the hour under way is the last one the source can have.
        end = min(window.end, window.start + HOUR * max(0, _hours_until(window.start, now)))
        pages = [(s, min(s + PAGE, end)) for s in _starts(window.start, end)]
        payloads = []
        for start, stop in pages:
            params = {
                "zone": settings.zone,
                "start": _stamp(start),
                "end": _stamp(stop),
                "temporalGranularity": "hourly",
                "emissionFactorType": settings.emission_factor_type,
            }
            response = self.client.get(f"{self.base_url}{PATH}", params=params)
            body = response.json()
            if isinstance(body, dict) and body.get("data") == []:
                continue  # nothing for this page yet: not an error, nothing to keep
            source = self.client.redact_url(response.url)
            data = json.dumps({"url": source, "body": body}, sort_keys=True).encode()
            name = (
                f"carbon-intensity-{settings.zone}-{settings.emission_factor_type}-"
                f"{_stamp(start, '%Y%m%dT%H%MZ')}-{_stamp(stop, '%Y%m%dT%H%MZ')}.json"
            )
            payloads.append(Payload(name=name, data=data, source=source))
        return payloads

    def parse(self, data: bytes, name: str, meter: Meter) -> SourceReadings:
        return parse_past_range(data)

    # The raw log keeps each hourly record once, however the ranges asked for were paged.
    def split_records(self, data: bytes) -> tuple[dict, list[dict]]:
        envelope = json.loads(data)
        body = envelope["body"]
        rest = {k: v for k, v in body.items() if k != "data"}
        return {**envelope, "body": rest}, body.get("data", [])

    def join_records(self, envelope: dict, records: list[dict]) -> bytes:
        body = {**envelope["body"], "data": records}
        return json.dumps({**envelope, "body": body}, sort_keys=True).encode()

    def record_key(self, record: dict) -> str:
        return str(record.get("datetime"))


def _stamp(moment: datetime, fmt: str = "%Y-%m-%dT%H:%M:%SZ") -> str:
    return pd.Timestamp(moment).tz_convert("UTC").strftime(fmt)


def _starts(start: datetime, end: datetime) -> list[datetime]:
    """The starts of the pages covering [start, end), each at most PAGE long."""
    count = math.ceil((end - start) / PAGE) if end > start else 0
    return [start + n * PAGE for n in range(count)]


def _hours_until(start: datetime, now: datetime) -> int:
    """Whole hours from `start` up to and including the hour under way at `now`."""
    return math.ceil((now - start) / HOUR)


def parse_past_range(data: bytes) -> SourceReadings:
    """Hourly intervals [datetime, datetime + 1 h) of carbonIntensity (gCO2e/kWh); an estimated
    hour has quality "estimated", the others "measured"; an hour without a value is left out."""
    body = json.loads(data)["body"]
    records = body.get("data") if isinstance(body, dict) else None
    if not isinstance(records, list):
        raise SourceDataError("response has no `data` list of hourly carbon intensities")
    rows = []
    for i, record in enumerate(records):
        granularity = record.get("temporalGranularity", body.get("temporalGranularity"))
        if granularity not in (None, "hourly"):
            raise SourceDataError(f"data[{i}]: temporalGranularity {granularity!r}, not hourly")
        try:
            start = pd.Timestamp(record["datetime"]).tz_convert("UTC")
            value = record["carbonIntensity"]
            if value is None:
                continue  # the source has no value for the hour: it stays missing
            if isinstance(value, bool):
                raise TypeError(f"carbonIntensity {value!r} is not a number")
            value = float(value)
        except (KeyError, ValueError, TypeError) as exc:
            raise SourceDataError(f"data[{i}]: {type(exc).__name__}: {exc}") from None
        quality = "estimated" if record.get("isEstimated") else "measured"
        rows.append((start, start + pd.Timedelta(HOUR), value, quality))
    frame = pd.DataFrame(rows, columns=["start", "end", "value", "quality"])
    return SourceReadings("interval", UNIT, frame)
