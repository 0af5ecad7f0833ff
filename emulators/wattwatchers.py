"""Wattwatchers API v3 emulator: devices, device details and 5-minute long energy.

Served as at `https://api-v3.wattwatchers.com.au` (no version in the path). Energy is in Joules and
each record's `timestamp` marks the END of its 5-minute interval, as on the real API.
"""

from __future__ import annotations

import math
import re
import time
import zoneinfo
from collections.abc import Collection, Sequence
from dataclasses import dataclass
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

INTERVAL = 300
MAX_WINDOW = 7 * 86400
LONGITUDE = 151.2  # Sydney: daily shapes follow the local sun
DEVICE_ID = re.compile(r"[BDEF][0-9A-Z]{12}")
GRANULARITIES = ("5m", "15m", "30m", "hour", "day", "week", "month")
NEEDS_TIMEZONE = ("hour", "day", "week", "month")
TIMEZONE_MESSAGE = (
    "You must specify a valid timezone value when applying granularity of "
    "'hour', 'day', 'week', or 'month.'"
)
CHANNELS = (
    ("Mains", 60, 1, "Grid connect"),
    ("Solar inverter", 40, 2, "Solar"),
    ("Hot water", 20, 3, "Hot water"),
)
CODES = {422: "UNPROCESSABLE_ENTITY", 429: "TOO_MANY_REQUESTS_TPS"}
TPS_LIMIT = 5  # the real minimum; it only rises with hundreds of devices
TPD_PER_DEVICE = (288 + 2880 + 288) * 5 // 4  # 5m + 30s + status calls a day, plus 25 %


@dataclass
class _Usage:
    """Calls of one key in the current wall-clock second and UTC day, for rate-limit headers."""

    second: int = 0
    in_second: int = 0
    day: int = 0
    in_day: int = 0


class WattwatchersEmulator(Emulator):
    fault_messages: ClassVar[dict[int, str]] = {
        429: "Too many requests",
        500: "Internal server error",
    }

    def __init__(
        self,
        api_keys: dict[str, list[str]],
        seed: int = 1,
        first_ts: int = 1_735_689_600,
        now: int | None = None,
        never_data: Collection[str] = frozenset(),
        gaps: Sequence[tuple[int, int]] = (),
    ) -> None:
        """`api_keys` maps a Bearer key to its devices; records exist after `first_ts` up to
        `now` (None: no limit), except in the permanent `gaps` (start <= T < end)."""
        super().__init__()
        bad = [d for ids in api_keys.values() for d in ids if not DEVICE_ID.fullmatch(d)]
        if bad:
            raise ValueError(f"device ids must be 13 chars starting with B, D, E or F: {bad}")
        self.api_keys = {key: list(ids) for key, ids in api_keys.items()}
        self.seed = seed
        self.first_ts = first_ts
        self.now = now
        self.never_data = frozenset(never_data)
        self.gaps = list(gaps)
        self._hidden: list[tuple[int, int, frozenset[str] | None]] = []
        self._usage: dict[str, _Usage] = {}

    def set_now(self, ts: int | None) -> None:
        with self._lock:
            self.now = ts

    def hide(self, start_ts: int, end_ts: int, devices: Collection[str] | None = None) -> None:
        """Withhold records start_ts <= T < end_ts of `devices` (default: all), as a device
        buffers them during an outage."""
        with self._lock:
            self._hidden.append((start_ts, end_ts, None if devices is None else frozenset(devices)))

    def release(self) -> None:
        """Serve every hidden record again: the devices have back-filled."""
        with self._lock:
            self._hidden.clear()

    def energy(self, device_id: str, channel: int, timestamp: int) -> tuple[int, int]:
        """(eRealPositive, eRealNegative) in J of `channel` (0-based) for the 5-minute record
        ending at `timestamp`: the exact values the server returns."""
        return _split(self._net(device_id, timestamp)[channel])

    def _net(self, device: str, ts: int) -> tuple[int, int, int]:
        """Net energy per channel: mains = house + hot water - solar, so it exports at noon."""
        day, hour = solar_time(ts - INTERVAL / 2, LONGITUDE)
        cloud = 0.3 + 0.7 * noise(self.seed, device, day, "cloud")
        flicker = 0.95 + 0.05 * noise(self.seed, device, ts)
        solar = round(750_000 * daylight(hour) * cloud * flicker)
        heating = 285_000 if 1 <= hour < 3 else 0
        hot_water = heating + round(15_000 + 15_000 * noise(self.seed, device, ts, "hot"))
        shape = 100_000 + 150_000 * _bump(hour, 8, 1.5) + 400_000 * _bump(hour, 19, 2)
        house = round(shape * (0.9 + 0.2 * noise(self.seed, device, ts, "house")))
        return house + hot_water - solar, -solar, hot_water

    def _record(self, device: str, ts: int) -> dict[str, Any]:
        net = self._net(device, ts)
        positive, negative = zip(*map(_split, net), strict=True)
        volts = [round(236 + 5 * noise(self.seed, device, ts, c, "v"), 1) for c in range(3)]
        amps = [abs(e) / INTERVAL / v for e, v in zip(net, volts, strict=True)]
        return {
            "timestamp": ts,
            "duration": INTERVAL,
            "eReal": list(net),
            "eRealPositive": list(positive),
            "eRealNegative": list(negative),
            "eReactive": [round(0.12 * e) for e in net],
            "vRMSMin": volts,
            "vRMSMax": [round(v + 2.5, 1) for v in volts],
            "iRMSMin": [round(0.8 * a, 3) for a in amps],
            "iRMSMax": [round(1.2 * a, 3) for a in amps],
        }

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        code = CODES.get(status, phrase(status).upper().replace(" ", "_"))
        return {"code": code, "httpCode": status, "message": message}

    def handle(self, request: RecordedRequest) -> Response:
        key = request.bearer()
        if key not in self.api_keys:
            raise ApiError(401, "Missing or invalid API key")
        rate_headers = self._count_call(key)
        devices = self.api_keys[key]
        match request.path.split("/")[1:]:
            case ["devices"]:
                body: Any = devices
            case ["devices", device]:
                body = _details(_visible(device, devices))
            case ["long-energy", device]:
                body = self._long_energy(_visible(device, devices), request.query)
            case _:
                raise ApiError(404, "Resource not found")
        if body is None:
            return Response(204)
        return Response(200, body, rate_headers)

    def _long_energy(self, device: str, query: dict[str, str]) -> list[dict[str, Any]] | None:
        _check_granularity(query.get("granularity", "5m"), query.get("timezone"))
        from_ts = _int_param(query, "fromTs", self.first_ts)
        to_ts = _int_param(query, "toTs", from_ts + MAX_WINDOW)
        if to_ts <= from_ts:
            raise ApiError(422, "toTs must be greater than fromTs.")
        if to_ts - from_ts > MAX_WINDOW:
            raise ApiError(422, "The requested time period is greater than 7 days.")
        if device in self.never_data:
            return None
        with self._lock:
            hidden = [(lo, hi) for lo, hi, of in self._hidden if of is None or device in of]
            holes = [*self.gaps, *hidden]
            now = self.now
        start = max(from_ts, self.first_ts + 1)
        end = to_ts if now is None else min(to_ts, now + 1)
        stamps = range(math.ceil(start / INTERVAL) * INTERVAL, end, INTERVAL)
        return [
            self._record(device, ts) for ts in stamps if not any(lo <= ts < hi for lo, hi in holes)
        ]

    def _count_call(self, key: str) -> dict[str, str]:
        """Count a call and describe the key's remaining TPS/TPD budget (reported, not enforced)."""
        now = time.time()
        second, day = int(now), int(now // 86400)
        with self._lock:
            usage = self._usage.setdefault(key, _Usage())
            if usage.second != second:
                usage.second, usage.in_second = second, 0
            if usage.day != day:
                usage.day, usage.in_day = day, 0
            usage.in_second += 1
            usage.in_day += 1
            in_second, in_day = usage.in_second, usage.in_day
        tpd_limit = TPD_PER_DEVICE * max(1, len(self.api_keys[key]))
        return {
            "X-RateLimit-TpsLimit": str(TPS_LIMIT),
            "X-RateLimit-TpsRemaining": str(max(0, TPS_LIMIT - in_second)),
            "X-RateLimit-TpsReset": f"{second + 1 - now:.3f}",
            "X-RateLimit-TpdLimit": str(tpd_limit),
            "X-RateLimit-TpdRemaining": str(max(0, tpd_limit - in_day)),
            "X-RateLimit-TpdReset": str((day + 1) * 86400 - int(now)),
        }


def _split(net: int) -> tuple[int, int]:
    """(eRealPositive, eRealNegative): import and export magnitudes, so eReal = pos - neg."""
    return max(net, 0), max(-net, 0)


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-(((hour - centre) / width) ** 2))


def _visible(device: str, devices: list[str]) -> str:
    """The device, or 404: the real API hides devices the key is not assigned to."""
    if device not in devices:
        raise ApiError(404, f"Device {device} not found")
    return device


def _details(device: str) -> dict[str, Any]:
    channels = [
        {
            "id": f"{device}_C{n}",
            "label": label,
            "ctRating": rating,
            "categoryId": category,
            "categoryLabel": category_label,
        }
        for n, (label, rating, category, category_label) in enumerate(CHANNELS, start=1)
    ]
    return {
        "id": device,
        "model": "6M+One",
        "timezone": "Australia/Sydney",
        "shortEnergyReportingInterval": 30,
        "channels": channels,
        "phases": 3,
    }


def _check_granularity(granularity: str, timezone: str | None) -> None:
    if granularity not in GRANULARITIES:
        raise ApiError(400, f"Invalid granularity '{granularity}'.")
    if granularity in NEEDS_TIMEZONE and not _is_zone(timezone):
        raise ApiError(400, TIMEZONE_MESSAGE)
    if granularity != "5m":
        raise ApiError(400, "granularity not supported by this emulator")


def _is_zone(name: str | None) -> bool:
    if not name:
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _int_param(query: dict[str, str], name: str, default: int) -> int:
    if name not in query:
        return default
    value = integer(query[name])
    if value is None:
        raise ApiError(422, f"{name} must be an integer Unix timestamp in seconds.")
    return value
