"""The API emulators over real loopback HTTP: auth, validation, data shape, faults and limits."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import requests

from emulators import OpenMeteoEmulator, SolcastEmulator, WattwatchersEmulator

KEY = "key_" + "0123456789abcdef" * 2
OTHER_KEY = "key_" + "f" * 32
DEVICE, OTHER_DEVICE, SILENT = "D123456789012", "DD54108399431", "E000000000001"
T0 = 1_735_689_600  # 2025-01-01T00:00Z, the Wattwatchers emulator's first_ts
DAY = 86_400
AUTH = {"Authorization": f"Bearer {KEY}"}
SITE = "ba75-e17a-7374-95ed"


@pytest.fixture
def ww():
    keys = {KEY: [DEVICE, SILENT], OTHER_KEY: [OTHER_DEVICE]}
    with WattwatchersEmulator(
        keys, first_ts=T0, never_data={SILENT}, gaps=[(T0 + 3600, T0 + 4800)]
    ) as emu:
        yield emu


def energy(emu, device=DEVICE, **params):
    return requests.get(f"{emu.url}/long-energy/{device}", headers=AUTH, params=params, timeout=5)


def test_wattwatchers_auth_failures_use_its_error_shape(ww):
    missing = requests.get(f"{ww.url}/devices", timeout=5)
    unknown = requests.get(f"{ww.url}/devices", headers={"Authorization": "Bearer nope"}, timeout=5)
    not_mine = requests.get(f"{ww.url}/devices/{OTHER_DEVICE}", headers=AUTH, timeout=5)
    assert (missing.status_code, unknown.status_code, not_mine.status_code) == (401, 401, 404)
    assert missing.json()["code"] == "UNAUTHORIZED" and missing.json()["httpCode"] == 401
    assert not_mine.json()["code"] == "NOT_FOUND" and not_mine.json()["httpCode"] == 404
    mine = requests.get(f"{ww.url}/devices", headers=AUTH, timeout=5).json()
    assert mine == [DEVICE, SILENT]
    details = requests.get(f"{ww.url}/devices/{DEVICE}", headers=AUTH, timeout=5).json()
    assert [c["id"] for c in details["channels"]] == [f"{DEVICE}_C{n}" for n in (1, 2, 3)]


def test_wattwatchers_validates_the_window_and_granularity(ww):
    too_long = energy(ww, fromTs=T0, toTs=T0 + 7 * DAY + 1)
    assert too_long.status_code == 422
    assert too_long.json()["message"] == "The requested time period is greater than 7 days."
    assert energy(ww, fromTs=T0, toTs=T0 + 7 * DAY).status_code == 200
    assert energy(ww, fromTs="2025-01-01", toTs=T0 + DAY).status_code == 422
    assert energy(ww, fromTs=T0 + DAY, toTs=T0).status_code == 422
    hourly = energy(ww, fromTs=T0, toTs=T0 + DAY, granularity="hour")
    assert hourly.status_code == 400
    assert hourly.json()["message"] == (
        "You must specify a valid timezone value when applying granularity of "
        "'hour', 'day', 'week', or 'month.'"
    )
    assert energy(ww, fromTs=T0, toTs=T0 + DAY, granularity="2m").status_code == 400


def test_wattwatchers_never_data_is_204_and_an_empty_window_is_an_empty_list(ww):
    silent = energy(ww, SILENT, fromTs=T0, toTs=T0 + DAY)
    assert silent.status_code == 204 and silent.content == b""
    before_first = energy(ww, fromTs=T0 - DAY, toTs=T0)
    assert before_first.status_code == 200 and before_first.json() == []


def test_wattwatchers_records_are_end_stamped_and_paging_does_not_change_them(ww):
    whole = energy(ww, fromTs=T0, toTs=T0 + 2 * DAY).json()
    paged = (
        energy(ww, fromTs=T0, toTs=T0 + DAY).json()
        + energy(ww, fromTs=T0 + DAY, toTs=T0 + 2 * DAY).json()
    )
    assert whole == paged
    stamps = [r["timestamp"] for r in whole]
    assert stamps[0] == T0 + 300 and stamps[-1] == T0 + 2 * DAY - 300
    assert stamps == sorted(stamps) and all(t % 300 == 0 for t in stamps)
    for record in whole:
        assert record["duration"] == 300
        for c in range(3):
            positive, negative = record["eRealPositive"][c], record["eRealNegative"][c]
            assert record["eReal"][c] == positive - negative
            assert ww.energy(DEVICE, c, record["timestamp"]) == (positive, negative)
    assert max(r["eRealNegative"][1] for r in whole) > 0  # solar exports in daylight
    assert all(r["eRealPositive"][1] == 0 for r in whole)


def test_wattwatchers_gaps_stay_missing_and_hidden_records_back_fill(ww):
    def stamps() -> set[int]:
        return {r["timestamp"] for r in energy(ww, fromTs=T0, toTs=T0 + DAY).json()}

    gap = set(range(T0 + 3600, T0 + 4800, 300))
    assert stamps().isdisjoint(gap)
    ww.hide(T0 + 6 * 3600, T0 + 8 * 3600)
    ww.set_now(T0 + 12 * 3600)
    hidden = stamps()
    assert max(hidden) == T0 + 12 * 3600
    assert hidden.isdisjoint(range(T0 + 6 * 3600, T0 + 8 * 3600))
    ww.release()
    back_filled = stamps()
    assert back_filled - hidden == set(range(T0 + 6 * 3600, T0 + 8 * 3600, 300))
    assert back_filled.isdisjoint(gap)


def test_wattwatchers_reports_rate_limits_and_injected_429s(ww):
    ok = energy(ww, fromTs=T0, toTs=T0 + 3600)
    for name in ("Tps", "Tpd"):
        for part in ("Limit", "Remaining", "Reset"):
            assert f"X-RateLimit-{name}{part}" in ok.headers
    ww.inject(429, times=2, path="/long-energy", retry_after=3)
    assert requests.get(f"{ww.url}/devices", headers=AUTH, timeout=5).status_code == 200
    throttled = [energy(ww, fromTs=T0, toTs=T0 + 3600) for _ in range(2)]
    assert all(r.status_code == 429 and r.headers["Retry-After"] == "3" for r in throttled)
    assert throttled[0].json()["code"] == "TOO_MANY_REQUESTS_TPS"
    assert energy(ww, fromTs=T0, toTs=T0 + 3600).json() == ok.json()
    assert sum(r.path.startswith("/long-energy") for r in ww.requests) == 4


def test_a_slow_fault_still_serves_the_data(ww):
    ww.inject(200, delay=0.3)
    with pytest.raises(requests.Timeout):
        requests.get(f"{ww.url}/devices", headers=AUTH, timeout=0.1)
    assert requests.get(f"{ww.url}/devices", headers=AUTH, timeout=5).json() == [DEVICE, SILENT]


NOW = datetime(2024, 6, 1, 2, 40, tzinfo=UTC)


@pytest.fixture
def solcast():
    with SolcastEmulator({KEY: [SITE]}, now=NOW, daily_limit=3) as emu:
        yield emu


def sites(emu, kind="estimated_actuals", site=SITE, headers=AUTH, **params):
    url = f"{emu.url}/rooftop_sites/{site}/{kind}"
    return requests.get(url, headers=headers, params={"format": "json", **params}, timeout=5)


def test_solcast_auth_and_parameter_errors(solcast):
    assert sites(solcast, headers={}).status_code == 401
    assert sites(solcast, headers={}, api_key="wrong").json()["response_status"] == {
        "error_code": "Unauthorized",
        "message": "Invalid or missing API key",
        "errors": [],
    }
    assert sites(solcast, headers={}, api_key=KEY, hours=1).status_code == 200
    missing = sites(solcast, site="0000-0000-0000-0000")
    assert missing.status_code == 404
    assert missing.json()["response_status"]["error_code"] == "NotFound"
    assert sites(solcast, hours=169).status_code == 400
    assert sites(solcast, hours="x").json()["response_status"]["error_code"] == "BadRequest"
    assert sites(solcast, format="csv").status_code == 400


def test_solcast_periods_are_ordered_and_match_pv_estimate(solcast):
    actuals = sites(solcast, hours=24).json()["estimated_actuals"]
    ends = [datetime.fromisoformat(a["period_end"]) for a in actuals]
    assert len(actuals) == 48 and ends == sorted(ends, reverse=True)
    assert ends[0] == datetime(2024, 6, 1, 2, 30, tzinfo=UTC)
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:00\.0000000Z", a["period_end"]) for a in actuals
    )
    assert all(a["period"] == "PT30M" for a in actuals)
    assert [a["pv_estimate"] for a in actuals] == [solcast.pv_estimate(SITE, e) for e in ends]
    assert (
        max(a["pv_estimate"] for a in actuals) > 0 and min(a["pv_estimate"] for a in actuals) == 0
    )
    forecasts = sites(solcast, "forecasts", hours=336).json()["forecasts"]
    first = datetime.fromisoformat(forecasts[0]["period_end"])
    assert len(forecasts) == 672 and first == datetime(2024, 6, 1, 3, tzinfo=UTC)
    assert all(f["pv_estimate10"] <= f["pv_estimate"] <= f["pv_estimate90"] for f in forecasts)


def test_solcast_daily_limit_then_reset_at_utc_midnight(solcast):
    assert [sites(solcast, hours=1).status_code for _ in range(3)] == [200] * 3
    exhausted = sites(solcast, hours=1)
    assert exhausted.status_code == 429
    assert exhausted.json()["response_status"] == {
        "error_code": "TooManyRequests",
        "message": "You have exceeded your free daily limit.",
        "errors": [],
    }
    solcast.set_now(NOW.replace(hour=23, minute=59))
    assert sites(solcast, hours=1).status_code == 429
    solcast.set_now(NOW + timedelta(days=1))
    assert sites(solcast, hours=1).status_code == 200


def test_solcast_injected_busy_429(solcast):
    solcast.inject(429)
    busy = sites(solcast, hours=1)
    assert busy.status_code == 429
    assert (
        busy.json()["response_status"]["message"] == "The server is busy, please try again later."
    )
    assert sites(solcast, hours=1).status_code == 200


def archive(emu, **overrides):
    params = {
        "latitude": -33.87,
        "longitude": 151.21,
        "start_date": "2026-03-30",
        "end_date": "2026-04-12",
        "hourly": "temperature_2m,shortwave_radiation",
        "timezone": "UTC",
    } | overrides
    return requests.get(f"{emu.url}/v1/archive", params=params, timeout=5)


def test_open_meteo_serves_every_hour_of_the_range():
    with OpenMeteoEmulator(seed=7) as emu:
        body = archive(emu).json()
    hourly = body["hourly"]
    assert len(hourly["time"]) == 14 * 24
    assert hourly["time"][0] == "2026-03-30T00:00" and hourly["time"][-1] == "2026-04-12T23:00"
    assert body["hourly_units"]["shortwave_radiation"] == "W/m²"
    hours = [datetime.fromisoformat(t).replace(tzinfo=UTC) for t in hourly["time"]]
    assert hourly["temperature_2m"] == [emu.temperature(-33.87, 151.21, h) for h in hours]
    assert hourly["shortwave_radiation"] == [emu.radiation(-33.87, 151.21, h) for h in hours]
    assert min(hourly["shortwave_radiation"]) == 0 and max(hourly["shortwave_radiation"]) > 100


@pytest.mark.parametrize(
    "overrides",
    [
        {"latitude": 91},
        {"longitude": "east"},
        {"start_date": "2026/03/30"},
        {"end_date": "2026-03-29"},
        {"hourly": "temperature_2m,snow_depth"},
        {"timezone": "Australia/Sydney"},
    ],
)
def test_open_meteo_rejects_bad_parameters(overrides):
    with OpenMeteoEmulator() as emu:
        response = archive(emu, **overrides)
    assert response.status_code == 400
    assert response.json()["error"] is True and response.json()["reason"]
