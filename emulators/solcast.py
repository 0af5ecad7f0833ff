"""Solcast legacy rooftop "sites" API emulator: estimated actuals and forecasts, 30-minute PV.

Served as at `https://api.solcast.com.au`. Values are kW averaged over each period, keyed by the
period's END in UTC; a free daily call limit per key resets at 00:00 UTC of the emulator's clock.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

from emulators.base import (
    ApiError,
    Emulator,
    RecordedRequest,
    Response,
    daylight,
    integer,
    noise,
    phrase,
    solar_time,
)

ROUTE = re.compile(r"/rooftop_sites/([^/]+)/(estimated_actuals|forecasts)")
PERIOD = timedelta(minutes=30)
LONGITUDE = 151.0  # east-coast Australia: solar noon near 02:00 UTC
DEFAULT_NOW = datetime(2025, 1, 8, tzinfo=UTC)
MAX_HOURS = {"estimated_actuals": 168, "forecasts": 336}


class SolcastEmulator(Emulator):
    fault_messages: ClassVar[dict[int, str]] = {
        429: "The server is busy, please try again later.",
    }

    def __init__(
        self,
        api_keys: dict[str, list[str]],
        seed: int = 1,
        now: datetime = DEFAULT_NOW,
        daily_limit: int = 10,
        capacity_kw: float = 5.0,
    ) -> None:
        """`api_keys` maps a key to its rooftop site ids; `now` (aware) is the emulator's clock."""
        super().__init__()
        self.api_keys = {key: list(sites) for key, sites in api_keys.items()}
        self.seed = seed
        self.now = _utc(now)
        self.daily_limit = daily_limit
        self.capacity_kw = capacity_kw
        self._calls: dict[tuple[str, date], int] = {}

    def set_now(self, now: datetime) -> None:
        with self._lock:
            self.now = _utc(now)

    def pv_estimate(self, site_id: str, period_end: datetime) -> float:
        """Average kW over the 30 minutes ending at `period_end`, exactly as served."""
        end = _utc(period_end).timestamp()
        day, hour = solar_time(end - PERIOD.total_seconds() / 2, LONGITUDE)
        cloud = 0.3 + 0.7 * noise(self.seed, site_id, day, "cloud")
        flicker = 0.9 + 0.1 * noise(self.seed, site_id, int(end))
        return round(0.9 * self.capacity_kw * daylight(hour) * cloud * flicker, 4)

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        error_code = phrase(status).replace(" ", "")  # e.g. NotFound, TooManyRequests
        return {"response_status": {"error_code": error_code, "message": message, "errors": []}}

    def handle(self, request: RecordedRequest) -> Response:
        key = request.bearer() or request.query.get("api_key")
        if key not in self.api_keys:
            raise ApiError(401, "Invalid or missing API key")
        route = ROUTE.fullmatch(request.path)
        if route is None:
            raise ApiError(404, "Resource not found")
        site, kind = route.groups()
        if site not in self.api_keys[key]:
            raise ApiError(404, f"Rooftop site {site} not found")
        hours = _hours(request.query, MAX_HOURS[kind])
        if request.query.get("format", "json") != "json":
            raise ApiError(400, "Only format=json is supported")
        now = self._spend_call(key)
        floor = datetime.fromtimestamp(now.timestamp() // 1800 * 1800, UTC)
        count = 2 * hours
        if kind == "estimated_actuals":
            ends = [floor - k * PERIOD for k in range(count)]
            return Response(200, {kind: [self._actual(site, end) for end in ends]})
        ends = [floor + k * PERIOD for k in range(1, count + 1)]
        return Response(200, {kind: [self._forecast(site, end) for end in ends]})

    def _spend_call(self, key: str) -> datetime:
        """Count a data call against the key's UTC day; return the clock it was served at."""
        with self._lock:
            now = self.now
            used = self._calls.get((key, now.date()), 0)
            if used >= self.daily_limit:
                raise ApiError(429, "You have exceeded your free daily limit.")
            self._calls[key, now.date()] = used + 1
        return now

    def _actual(self, site: str, end: datetime) -> dict[str, Any]:
        return {"pv_estimate": self.pv_estimate(site, end), **_period(end)}

    def _forecast(self, site: str, end: datetime) -> dict[str, Any]:
        estimate = self.pv_estimate(site, end)
        return {
            "pv_estimate": estimate,
            "pv_estimate10": round(0.7 * estimate, 4),
            "pv_estimate90": round(min(self.capacity_kw, 1.2 * estimate), 4),
            **_period(end),
        }


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return moment.astimezone(UTC)


def _period(end: datetime) -> dict[str, str]:
    return {"period_end": end.strftime("%Y-%m-%dT%H:%M:%S.0000000Z"), "period": "PT30M"}


def _hours(query: dict[str, str], maximum: int) -> int:
    hours = integer(query.get("hours", "168"))
    if hours is None or not 1 <= hours <= maximum:
        raise ApiError(400, f"hours must be an integer between 1 and {maximum}")
    return hours
