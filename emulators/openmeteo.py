"""Open-Meteo historical weather (archive) API emulator: hourly values in GMT, no key.

Served as at `https://archive-api.open-meteo.com` (path `/v1/archive`). Hours are labelled by their
start in GMT; shortwave_radiation is the mean of the PRECEDING hour, as on the real API.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from emulators.base import (
    ApiError,
    Emulator,
    RecordedRequest,
    Response,
    daylight,
    noise,
    solar_time,
)

DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
UNITS = {"temperature_2m": "°C", "shortwave_radiation": "W/m²", "relative_humidity_2m": "%"}
TIMEZONES = ("GMT", "UTC")


class OpenMeteoEmulator(Emulator):
    def __init__(self, seed: int = 1) -> None:
        super().__init__()
        self.seed = seed

    def temperature(self, lat: float, lon: float, hour: datetime) -> float:
        """temperature_2m in °C at `hour` (naive means UTC), exactly as served."""
        ts = _epoch(hour)
        day_of_year = datetime.fromtimestamp(ts, UTC).timetuple().tm_yday
        season = 6 * math.cos(2 * math.pi * (day_of_year - 15) / 365.25)  # warmest mid-January
        mean = 27 - 0.4 * abs(lat) + (season if lat < 0 else -season)
        jitter = 0.8 * (noise(self.seed, _place(lat, lon), ts, "temp") - 0.5)
        weather = 6 * self._weather(lat, lon, ts)
        return round(mean + weather + jitter + 5 * _diurnal(solar_time(ts, lon)[1]), 1)

    def radiation(self, lat: float, lon: float, hour: datetime) -> float:
        """shortwave_radiation in W/m², the mean over the hour BEFORE `hour`, exactly as served."""
        day, solar_hour = solar_time(_epoch(hour) - 1800, lon)
        cloud = 0.3 + 0.7 * noise(self.seed, _place(lat, lon), day, "cloud")
        return round(1000 * daylight(solar_hour) * cloud, 1)

    def humidity(self, lat: float, lon: float, hour: datetime) -> int:
        """relative_humidity_2m in %, lowest in the warm afternoon, exactly as served."""
        ts = _epoch(hour)
        warmth = 15 * _diurnal(solar_time(ts, lon)[1]) + 20 * self._weather(lat, lon, ts)
        jitter = 6 * (noise(self.seed, _place(lat, lon), ts, "humidity") - 0.5)
        return min(100, max(5, round(65 - warmth + jitter)))

    def _weather(self, lat: float, lon: float, ts: float) -> float:
        """A -0.5..0.5 anomaly drifting from one solar day's draw to the next (no midnight jump)."""
        day, solar_hour = solar_time(ts, lon)
        today, tomorrow = (noise(self.seed, _place(lat, lon), d, "weather") for d in (day, day + 1))
        return today + (tomorrow - today) * solar_hour / 24 - 0.5

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": True, "reason": message}

    def handle(self, request: RecordedRequest) -> Response:
        if request.path != "/v1/archive":
            raise ApiError(404, "Not Found")
        query = request.query
        lat = _coordinate(query, "latitude", 90)
        lon = _coordinate(query, "longitude", 180)
        start, end = _date(query, "start_date"), _date(query, "end_date")
        if end < start:
            raise ApiError(400, "End-date must be larger or equal than start-date")
        variables = _variables(query)
        if query.get("timezone", "GMT") not in TIMEZONES:
            raise ApiError(400, "Only timezone=UTC or GMT is supported by this emulator")
        first = datetime.combine(start, datetime.min.time(), UTC)
        hours = [first + timedelta(hours=n) for n in range(24 * ((end - start).days + 1))]
        series: dict[str, Callable[[float, float, datetime], float]] = {
            "temperature_2m": self.temperature,
            "shortwave_radiation": self.radiation,
            "relative_humidity_2m": self.humidity,
        }
        hourly: dict[str, list[Any]] = {"time": [h.strftime("%Y-%m-%dT%H:%M") for h in hours]}
        hourly |= {name: [series[name](lat, lon, h) for h in hours] for name in variables}
        return Response(
            200,
            {
                "latitude": lat,
                "longitude": lon,
                "generationtime_ms": 0.1,
                "utc_offset_seconds": 0,
                "timezone": "GMT",
                "timezone_abbreviation": "GMT",
                "elevation": 10.0,
                "hourly_units": {"time": "iso8601"} | {name: UNITS[name] for name in variables},
                "hourly": hourly,
            },
        )


def _epoch(hour: datetime) -> float:
    return (hour if hour.tzinfo else hour.replace(tzinfo=UTC)).timestamp()


def _place(lat: float, lon: float) -> str:
    return f"{lat:.4f},{lon:.4f}"


def _diurnal(solar_hour: float) -> float:
    """-1..1, warmest at 15:00 solar time."""
    return math.sin(2 * math.pi * (solar_hour - 9) / 24)


def _coordinate(query: dict[str, str], name: str, limit: int) -> float:
    if name not in query:
        raise ApiError(400, f"Value of type 'Float' required for key '{name}'.")
    try:
        value = float(query[name])
    except ValueError:
        raise ApiError(400, f"Invalid value '{query[name]}' for key '{name}'.") from None
    if not -limit <= value <= limit:
        reason = f"{name.title()} must be in range of -{limit} to {limit}°. Given: {value}."
        raise ApiError(400, reason)
    return value


def _date(query: dict[str, str], name: str) -> date:
    text = query.get(name)
    if text is None:
        raise ApiError(400, f"Value of type 'String' required for key '{name}'.")
    try:
        if DATE.fullmatch(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise ApiError(400, f"Invalid date '{text}' for key '{name}'; use YYYY-MM-DD.")


def _variables(query: dict[str, str]) -> list[str]:
    if not query.get("hourly"):
        raise ApiError(400, "Value of type 'String' required for key 'hourly'.")
    variables = list(dict.fromkeys(v.strip() for v in query["hourly"].split(",")))
    unknown = [v for v in variables if v not in UNITS]
    if unknown:
        reason = f"Cannot initialize WeatherVariable from invalid String value {unknown[0]}."
        raise ApiError(400, reason)
    return variables
