"""`weather`: hourly outside temperature or solar irradiance for a location, from Open-Meteo.

Open-Meteo (open-meteo.com) was chosen because it needs no key, is free for non-commercial
use, serves the ERA5-based historical archive by date range with an hourly UTC grid, and offers
exactly the variables the warehouse needs: `temperature_2m` (degC, an instant on the hour) and
`shortwave_radiation` (W/m2, the mean of the preceding hour). The archive lags real time by a few
days (about 5, for ERA5): an hour stays due and is fetched again until it appears or `settle`
has passed; each hourly value is kept once in the raw log.
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
from meterflow.configuration.config import WEATHER_VARIABLES, Meter
from meterflow.standardisation.readings import SourceReadings

UNITS = {"temperature_2m": "degC", "shortwave_radiation": "W/m2"}


class WeatherConnector:
    type: ClassVar[str] = "weather"
    version: ClassVar[str] = "1"
    polls: ClassVar[bool] = False
    settle: ClassVar[timedelta] = timedelta(days=7)
    # Meter health defaults (the ERA5 archive is about 5 days behind): data this far behind is
    # late, this long without new data silent (an alert); a meter's XML may set its own.
    latency: ClassVar[timedelta] = timedelta(days=6)
    silent_after: ClassVar[timedelta] = timedelta(days=10)

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
        variable = WEATHER_VARIABLES[meter.data_type]
        # The stamp at the window's end closes its last hour for both variables: it is the
        # temperature's next instant and the radiation mean of the hour before it.
        last = window.end
        params = {
            "latitude": f"{settings.latitude:.4f}",
            "longitude": f"{settings.longitude:.4f}",
            "start_date": f"{window.start:%Y-%m-%d}",
            "end_date": f"{last:%Y-%m-%d}",
            "hourly": variable,
            "timezone": "UTC",
        }
        response = self.client.get(f"{self.base_url}/v1/archive", params=params)
        source = self.client.redact_url(response.url)
        envelope = {"url": source, "body": response.json()}
        name = f"{variable}-{params['start_date']}-{params['end_date']}.json"
        return [
            Payload(name=name, data=json.dumps(envelope, sort_keys=True).encode(), source=source)
        ]

    def parse(self, data: bytes, name: str, meter: Meter) -> SourceReadings:
        return parse_hourly(data, WEATHER_VARIABLES[meter.data_type])

    # The raw log keeps each hourly value once, however the date ranges asked for overlapped.
    def split_records(self, data: bytes) -> tuple[dict, list[dict]]:
        envelope = json.loads(data)
        hourly = envelope["body"].get("hourly", {})
        records = [
            dict(zip(hourly, row, strict=True)) for row in zip(*hourly.values(), strict=True)
        ]
        body = {k: v for k, v in envelope["body"].items() if k != "hourly"}
        return {**envelope, "body": body}, records

    def join_records(self, envelope: dict, records: list[dict]) -> bytes:
        hourly = {column: [r[column] for r in records] for column in records[0]}
        body = {**envelope["body"], "hourly": hourly}
        return json.dumps({**envelope, "body": body}, sort_keys=True).encode()

    def record_key(self, record: dict) -> str:
        return str(record.get("time"))


def parse_hourly(data: bytes, variable: str) -> SourceReadings:
    hourly = json.loads(data)["body"].get("hourly", {})
    if variable not in hourly or "time" not in hourly:
        raise SourceDataError(f"response has no hourly {variable}")
    times = pd.to_datetime(pd.Series(hourly["time"]), format="ISO8601").dt.tz_localize("UTC")
    values = pd.to_numeric(pd.Series(hourly[variable], dtype="object"), errors="coerce")
    frame = pd.DataFrame({"time": times, "value": values.astype("float64")}).dropna()
    if variable == "temperature_2m":
        return SourceReadings("instantaneous", UNITS[variable], frame)
    # Radiation is the mean over the hour before the stamp.
    intervals = pd.DataFrame(
        {
            "start": frame["time"] - pd.Timedelta(hours=1),
            "end": frame["time"],
            "value": frame["value"],
            "quality": "measured",
        }
    )
    return SourceReadings("interval", UNITS[variable], intervals)
