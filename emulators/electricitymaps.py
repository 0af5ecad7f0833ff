"""Electricity Maps API v3 emulator: hourly carbon intensity of grid zones (past-range).

Served as at `https://api.electricitymaps.com`: `GET /v3/carbon-intensity/past-range` with `zone`,
`start` (included), `end` (excluded), `temporalGranularity=hourly` and `emissionFactorType`
(`direct` or `lifecycle`, by default lifecycle as on the real API), the token in the `auth-token`
header. Each record's `carbonIntensity` (gCO2eq/kWh, an integer) is the hour starting at its
`datetime`. Emulated: deterministic intensities per zone and hour from a seed (lifecycle above
direct); the 10-day limit of an hourly range (400); unknown zones (404); a missing or wrong token
(401); a rate limit per token (`limit_per_minute` calls per `rate_window` seconds, then 429 with
Retry-After); hours the source lacks (`hide`: absent from `data`); and estimates: the 24 hours
before the emulator's `now` are `isEstimated` with a provisional value, revised once they are
older. Hours from `now` on are not served (past data only). Errors are `{"error": "..."}`.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from emulators.base import ApiError, Emulator, RecordedRequest, Response, noise

PATH = "/v3/carbon-intensity/past-range"
HOUR = timedelta(hours=1)
MAX_RANGE = timedelta(days=10)  # for hourly granularity
ESTIMATED_FOR = timedelta(hours=24)
DEFAULT_NOW = datetime(2026, 4, 13, tzinfo=UTC)
# Zones served and the mean direct intensity of each, gCO2eq/kWh (roughly their real levels).
ZONES: dict[str, float] = {
    "AUS-NSW": 640.0,
    "AUS-QLD": 690.0,
    "AUS-VIC": 780.0,
    "AUS-WA": 520.0,
    "BE": 150.0,
    "DE": 370.0,
    "FR": 40.0,
    "GB": 190.0,
    "NL": 320.0,
    "US-CAL-CISO": 210.0,
}
EMISSION_FACTOR_TYPES = ("direct", "lifecycle")


class ElectricityMapsEmulator(Emulator):
    fault_messages: ClassVar[dict[int, str]] = {
        429: "Rate limit exceeded, please retry later",
        500: "Internal server error",
    }

    def __init__(
        self,
        api_keys: Collection[str],
        seed: int = 1,
        now: datetime = DEFAULT_NOW,
        zones: dict[str, float] | None = None,
        limit_per_minute: int | None = None,
        rate_window: float = 60.0,
    ) -> None:
        """`api_keys`: the tokens accepted; `now` (aware): the emulator's clock; `zones`: zone key
        -> mean direct intensity; `limit_per_minute`: calls a token may make per `rate_window`
        seconds (a minute; tests shorten it), None for no limit."""
        super().__init__()
        self.api_keys = set(api_keys)
        self.seed = seed
        self.now = _utc(now)
        self.zones = dict(ZONES if zones is None else zones)
        self.limit_per_minute = limit_per_minute
        self.rate_window = rate_window
        self._calls: dict[str, deque[float]] = {}
        self._hidden: list[tuple[datetime, datetime, str | None]] = []

    def set_now(self, now: datetime) -> None:
        with self._lock:
            self.now = _utc(now)

    def hide(self, start: datetime, end: datetime, zone: str | None = None) -> None:
        """Leave out the hours start <= H < end of `zone` (default: every zone), as when the
        source has no data for them: they are absent from `data`."""
        with self._lock:
            self._hidden.append((_utc(start), _utc(end), zone))

    def release(self) -> None:
        """Serve every hidden hour again: the source has filled them in."""
        with self._lock:
            self._hidden.clear()

    def intensity(self, zone: str, hour: datetime, emission_factor_type: str = "direct") -> int:
        """The final carbonIntensity of the hour starting at `hour`, exactly as served once the
        hour is no longer estimated."""
        ts = _utc(hour).timestamp()
        day = int(ts // 86400)
        daily = 0.8 + 0.4 * noise(self.seed, zone, day, "day")  # wind and sun of the day
        evening = 0.15 * math.sin(2 * math.pi * (ts / 3600 % 24 - 3) / 24)
        jitter = 0.9 + 0.2 * noise(self.seed, zone, int(ts), "hour")
        direct = self.zones[zone] * daily * (1 + evening) * jitter
        if emission_factor_type == "lifecycle":
            return round(1.1 * direct + 25)
        return round(direct)

    def estimate(self, zone: str, hour: datetime, emission_factor_type: str = "direct") -> int:
        """The provisional carbonIntensity served while the hour is estimated."""
        final = self.intensity(zone, hour, emission_factor_type)
        return round(final * (0.9 + 0.2 * noise(self.seed, zone, _utc(hour).timestamp(), "est")))

    def is_estimated(self, hour: datetime) -> bool:
        """Whether the hour is still estimated at the emulator's `now` (one of the last 24)."""
        return _utc(hour) >= self.now - ESTIMATED_FOR

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": message}

    def handle(self, request: RecordedRequest) -> Response:
        token = request.header("auth-token")
        if not token:
            raise ApiError(401, "No auth-token provided: pass your token in the auth-token header")
        if token not in self.api_keys:
            raise ApiError(401, "Invalid auth-token")
        wait = self._spend_call(token)
        if wait is not None:
            message = f"Rate limit of {self.limit_per_minute} requests per minute exceeded"
            return Response(429, self.error_body(429, message), {"Retry-After": str(wait)})
        if request.path != PATH:
            raise ApiError(404, f"Route {request.path} not found")
        query = request.query
        zone = query.get("zone")
        if not zone:
            raise ApiError(400, "zone is required")
        if zone not in self.zones:
            raise ApiError(404, f"Zone '{zone}' does not exist or is not available")
        granularity = query.get("temporalGranularity", "hourly")
        if granularity != "hourly":
            reason = f"temporalGranularity '{granularity}' is not emulated (hourly only)"
            raise ApiError(400, reason)
        factor = query.get("emissionFactorType", "lifecycle")
        if factor not in EMISSION_FACTOR_TYPES:
            raise ApiError(400, f"emissionFactorType must be direct or lifecycle, not '{factor}'")
        start, end = _moment(query, "start"), _moment(query, "end")
        if end <= start:
            raise ApiError(400, "end must be after start")
        if end - start > MAX_RANGE:
            raise ApiError(400, "The maximum range for hourly granularity is 10 days")
        with self._lock:
            now, hidden = self.now, list(self._hidden)
        first = start.replace(minute=0, second=0, microsecond=0)
        hours = [first + n * HOUR for n in range(math.ceil((end - first) / HOUR))]
        data = [
            self._record(zone, hour, factor, now)
            for hour in hours
            if hour < now and not any(a <= hour < b and z in (None, zone) for a, b, z in hidden)
        ]
        return Response(200, {"zone": zone, "data": data, "temporalGranularity": "hourly"})

    def _record(self, zone: str, hour: datetime, factor: str, now: datetime) -> dict[str, Any]:
        estimated = hour >= now - ESTIMATED_FOR
        value = (self.estimate if estimated else self.intensity)(zone, hour, factor)
        created = hour + HOUR
        return {
            "zone": zone,
            "carbonIntensity": value,
            "datetime": _iso(hour),
            "updatedAt": _iso(created if estimated else hour + ESTIMATED_FOR),
            "createdAt": _iso(created),
            "emissionFactorType": factor,
            "isEstimated": estimated,
            "estimationMethod": "TIME_SLICER_AVERAGE" if estimated else None,
            "temporalGranularity": "hourly",
        }

    def _spend_call(self, token: str) -> int | None:
        """Count a call of the token; the seconds to wait (Retry-After) if it is over its limit."""
        if self.limit_per_minute is None:
            return None
        with self._lock:
            clock = time.monotonic()
            calls = self._calls.setdefault(token, deque())
            while calls and calls[0] <= clock - self.rate_window:
                calls.popleft()
            if len(calls) >= self.limit_per_minute:
                return max(1, math.ceil(calls[0] + self.rate_window - clock))
            calls.append(clock)
        return None


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _moment(query: dict[str, str], name: str) -> datetime:
    """An ISO 8601 datetime parameter (Z or an offset; without one, UTC)."""
    text = query.get(name)
    if not text:
        raise ApiError(400, f"{name} is required (an ISO 8601 datetime)")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"{name} '{text}' is not an ISO 8601 datetime") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
