"""Grid carbon intensity from Electricity Maps: the emulator speaks the API v3 protocol, and the
`electricitymaps` connector is run against it over loopback HTTP, through the real HTTP client,
raw log and standardisation (no patched clients)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pandas as pd
import pytest
import requests
from pydantic import SecretStr

from connectors import CONNECTOR_TYPES, connector_for
from emulators.electricitymaps import PATH, ElectricityMapsEmulator
from meterflow.collection.catalog import archived
from meterflow.collection.collect import collect_meter
from meterflow.collection.plan import plan_meters
from meterflow.collection.sources import SourceAccess
from meterflow.common.errors import ConfigError
from meterflow.common.http import SourceRejected
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.config import ElectricityMapsSettings
from meterflow.configuration.participant_xml import load_participant
from meterflow.hours.hourly_store import read_hours

KEY = "emaps-" + "c0ffee42" * 4
WRONG_KEY = "emaps-" + "deadbeef" * 4
NOW = datetime(2026, 4, 13, tzinfo=UTC)
HOUR = timedelta(hours=1)
CONFIG = """<participant id="acme" name="Acme">
  <properties>
    <property id="bru" name="Brussels office" timezone="Europe/Brussels" country="BE"
              floorArea="800">
      <meter id="grid" name="Belgian grid" dataType="grid_intensity" credentials="acme-emaps">
        <electricitymaps zone="BE"/>
      </meter>
      <meter id="grid-lca" dataType="grid_intensity" credentials="acme-emaps">
        <electricitymaps zone="BE" emissionFactorType="lifecycle"/>
      </meter>
      <meter id="grid-xx" dataType="grid_intensity" credentials="acme-emaps">
        <electricitymaps zone="XX"/>
      </meter>
    </property>
  </properties>
</participant>"""


@pytest.fixture
def participant():
    return load_participant(CONFIG.encode())


@pytest.fixture
def emaps():
    with ElectricityMapsEmulator(api_keys={KEY}, seed=11, now=NOW) as emulator:
        yield emulator


def access(emulator, key: str | None = KEY) -> SourceAccess:
    api_key = SecretStr(key) if key is not None else None
    return SourceAccess(block="acme-emaps", base_url=emulator.url, api_key=api_key)


def collect(storage, participant, meter_id, source: SourceAccess, window, now=NOW):
    meter = participant.meter(meter_id)
    connector = connector_for(meter, participant.id, source)
    return collect_meter(storage, participant, meter, connector, window, now=now)


def calls(emulator) -> list:
    return [r for r in emulator.requests if r.path == PATH]


def stored(storage, participant, meter_id, window) -> pd.DataFrame:
    hours = read_hours(storage, participant.meter(meter_id), window.days())
    return hours.set_index("hour_utc").loc[window.start : window.end - HOUR]


def served(emulator, hour, factor="direct") -> int:
    """The value the emulator serves for the hour at its `now`: estimate or final."""
    moment = hour.to_pydatetime()
    final = not emulator.is_estimated(moment)
    return (emulator.intensity if final else emulator.estimate)("BE", moment, factor)


def past_range(emulator, headers=None, **overrides):
    params = {
        "zone": "BE",
        "start": "2026-04-01T00:00:00Z",
        "end": "2026-04-02T00:00:00Z",
        "temporalGranularity": "hourly",
    } | overrides
    headers = {"auth-token": KEY} if headers is None else headers
    return requests.get(f"{emulator.url}{PATH}", params=params, headers=headers, timeout=5)


# The emulator speaks the protocol.


def test_emulator_serves_each_hour_starting_at_its_datetime(emaps):
    body = past_range(emaps, emissionFactorType="direct").json()
    assert (body["zone"], body["temporalGranularity"]) == ("BE", "hourly")
    data = body["data"]
    assert len(data) == 24 and data[0]["datetime"] == "2026-04-01T00:00:00.000Z"
    assert data[-1]["datetime"] == "2026-04-01T23:00:00.000Z"
    hours = [datetime(2026, 4, 1, tzinfo=UTC) + n * HOUR for n in range(24)]
    assert [d["carbonIntensity"] for d in data] == [emaps.intensity("BE", h) for h in hours]
    assert {d["isEstimated"] for d in data} == {False}
    assert {d["emissionFactorType"] for d in data} == {"direct"}
    # Lifecycle (the API's default) counts upstream emissions too: it is higher.
    lifecycle = past_range(emaps).json()["data"]
    assert {d["emissionFactorType"] for d in lifecycle} == {"lifecycle"}
    assert all(
        lc["carbonIntensity"] > d["carbonIntensity"] for lc, d in zip(lifecycle, data, strict=True)
    )


def test_emulator_marks_the_last_24_hours_estimated_and_serves_nothing_from_now(emaps):
    start, end = NOW - timedelta(days=2), NOW + timedelta(days=1)
    data = past_range(emaps, start=start.isoformat(), end=end.isoformat()).json()["data"]
    assert len(data) == 48  # nothing from `now` on
    assert [d["isEstimated"] for d in data] == [False] * 24 + [True] * 24
    assert {d["estimationMethod"] for d in data[24:]} == {"TIME_SLICER_AVERAGE"}
    emaps.set_now(NOW + timedelta(days=1))
    later = past_range(emaps, start=start.isoformat(), end=end.isoformat()).json()["data"]
    assert [d["isEstimated"] for d in later[:48]] == [False] * 48


@pytest.mark.parametrize(
    ("headers", "overrides", "status", "text"),
    [
        ({}, {}, 401, "auth-token"),
        ({"auth-token": WRONG_KEY}, {}, 401, "Invalid auth-token"),
        ({"Authorization": f"Bearer {KEY}"}, {}, 401, "auth-token"),
        (None, {"zone": "XX"}, 404, "Zone 'XX'"),
        (None, {"end": "2026-04-11T01:00:00Z"}, 400, "10 days"),
        (None, {"end": "2026-04-01T00:00:00Z"}, 400, "after start"),
        (None, {"start": "yesterday"}, 400, "ISO 8601"),
        (None, {"emissionFactorType": "marginal"}, 400, "emissionFactorType"),
        (None, {"temporalGranularity": "daily"}, 400, "hourly only"),
    ],
)
def test_emulator_refuses_like_the_api(emaps, headers, overrides, status, text):
    response = past_range(emaps, headers, **overrides)
    assert response.status_code == status
    assert text in response.json()["error"]


def test_emulator_allows_exactly_ten_days(emaps):
    response = past_range(emaps, end="2026-04-11T00:00:00Z")
    assert response.status_code == 200 and len(response.json()["data"]) == 240


def test_emulator_rate_limit_answers_429_with_retry_after():
    with ElectricityMapsEmulator({KEY}, now=NOW, limit_per_minute=2) as emulator:
        assert [past_range(emulator).status_code for _ in range(2)] == [200, 200]
        limited = past_range(emulator)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert "Rate limit" in limited.json()["error"]


def test_emulator_hides_hours_of_one_zone(emaps):
    emaps.hide(datetime(2026, 4, 1, 5, tzinfo=UTC), datetime(2026, 4, 1, 8, tzinfo=UTC), "BE")
    data = past_range(emaps).json()["data"]
    assert len(data) == 21
    assert "2026-04-01T05:00:00.000Z" not in {d["datetime"] for d in data}
    assert len(past_range(emaps, zone="DE").json()["data"]) == 24
    emaps.release()
    assert len(past_range(emaps).json()["data"]) == 24


# The connector against the emulator.


def test_a_25_day_window_is_fetched_in_3_pages_with_every_hour(storage, participant, emaps):
    window = HourWindow(NOW - timedelta(days=25), NOW)
    result = collect(storage, participant, "grid", access(emaps), window)
    assert result.hours_missing == 0 and result.payloads_new == 3
    pages = calls(emaps)
    assert len(pages) == 3
    bounds = [(pd.Timestamp(c.query["start"]), pd.Timestamp(c.query["end"])) for c in pages]
    assert bounds[0][0] == window.start and bounds[-1][1] == window.end
    assert all(b[0] == a[1] for a, b in pairwise(bounds))  # no gap, no overlap
    assert max(end - start for start, end in bounds) <= timedelta(days=10)
    for call in pages:
        assert call.header("auth-token") == KEY and call.header("Authorization") is None
        assert call.query["temporalGranularity"] == "hourly"
        assert call.query["emissionFactorType"] == "direct"
    hours = stored(storage, participant, "grid", window)
    assert list(hours.index) == list(window.hours())
    assert hours.value.to_dict() == {h: served(emaps, h) for h in window.hours()}
    assert set(hours.unit) == {"gCO2e/kWh"} and set(hours.coverage) == {1.0}
    estimated = hours.index >= NOW - timedelta(hours=24)
    assert set(hours.quality[estimated]) == {"estimated"}
    assert set(hours.quality[~estimated]) == {"measured"}


def test_lifecycle_factors_are_asked_for_when_configured(storage, participant, emaps):
    window = HourWindow(NOW - timedelta(days=3), NOW - timedelta(days=2))
    collect(storage, participant, "grid-lca", access(emaps), window)
    (call,) = calls(emaps)
    assert call.query["emissionFactorType"] == "lifecycle"
    hours = stored(storage, participant, "grid-lca", window)
    assert hours.value.to_dict() == {h: served(emaps, h, "lifecycle") for h in window.hours()}


def test_a_rate_limited_source_still_yields_every_hour(storage, participant, caplog):
    caplog.set_level(logging.WARNING)
    window = HourWindow(NOW - timedelta(days=25), NOW)
    emulator = ElectricityMapsEmulator({KEY}, seed=11, now=NOW, limit_per_minute=1, rate_window=1)
    with emulator:
        result = collect(storage, participant, "grid", access(emulator), window)
        hours = stored(storage, participant, "grid", window)
        assert hours.value.to_dict() == {h: served(emulator, h) for h in window.hours()}
    assert result.hours_missing == 0 and len(hours) == 25 * 24
    assert len(calls(emulator)) > 3  # each later page was refused first, then retried
    assert "HTTP 429" in caplog.text and KEY not in caplog.text


def test_hours_the_source_lacks_stay_missing_not_zero_nor_interpolated(storage, participant, emaps):
    window = HourWindow(NOW - timedelta(days=7), NOW - timedelta(days=3))
    gap = HourWindow(NOW - timedelta(days=5, hours=-10), NOW - timedelta(days=5, hours=-13))
    emaps.hide(gap.start, gap.end, "BE")
    first = collect(storage, participant, "grid", access(emaps), window)
    assert first.hours_missing == 3
    hours = stored(storage, participant, "grid", window)
    held = hours[hours.quality != "missing"].value.dropna()
    assert not set(gap.hours()) & set(held.index)  # no value at all: not 0, not interpolated
    assert held.to_dict() == {h: served(emaps, h) for h in window.hours() if h not in gap.hours()}
    # Once the source has them, a later fetch fills them in.
    emaps.release()
    later = collect(storage, participant, "grid", access(emaps), window)
    assert sorted(later.changed.hour_utc) == list(gap.hours())
    assert later.hours_missing == 0


@pytest.mark.parametrize(
    ("key", "meter_id", "status"),
    [(WRONG_KEY, "grid", 401), (None, "grid", 401), (KEY, "grid-xx", 404)],
)
def test_refusals_fail_at_once_naming_participant_and_meter_never_the_key(
    storage, participant, emaps, caplog, key, meter_id, status
):
    caplog.set_level(logging.DEBUG)
    window = HourWindow(NOW - timedelta(days=25), NOW)
    with pytest.raises(SourceRejected) as caught:
        collect(storage, participant, meter_id, access(emaps, key), window)
    message = str(caught.value)
    assert caught.value.status == status
    assert f"acme/{meter_id} electricitymaps (block acme-emaps)" in message
    assert len(calls(emaps)) == 1  # no retry of a refusal, no further page
    for secret in (KEY, WRONG_KEY):
        assert secret not in message and secret not in caplog.text
    assert not any(s.encode() in storage.read(k) for k in storage.list() for s in (KEY, WRONG_KEY))


def test_rerunning_a_window_archives_nothing_new_until_the_source_revises(
    storage, participant, emaps
):
    window = HourWindow(NOW - timedelta(days=25), NOW)
    first = collect(storage, participant, "grid", access(emaps), window)
    keys = set(storage.list())
    again = collect(storage, participant, "grid", access(emaps), window)
    assert first.payloads_new == 3 and first.hours_new == 25 * 24
    assert (again.payloads_new, again.hours_new) == (0, 0)
    assert len(calls(emaps)) == 6  # it did ask again
    assert {k for k in set(storage.list()) - keys if k.startswith("raw/")} == set()
    # Two days on, the estimated hours are final: only they are archived and changed.
    later = NOW + timedelta(days=2)
    emaps.set_now(later)
    revised = collect(storage, participant, "grid", access(emaps), window, now=later)
    estimated = [h for h in window.hours() if h >= NOW - timedelta(hours=24)]
    assert revised.payloads_new == 1
    assert sorted(revised.changed.hour_utc) == estimated
    *_, last = archived(storage, "grid")
    records = json.loads(last["data"])["body"]["data"]
    assert [pd.Timestamp(r["datetime"]) for r in records] == estimated  # the revised ones only
    assert last["records_fetched"] == 5 * 24  # of the last page's records
    hours = stored(storage, participant, "grid", window)
    assert set(hours.quality) == {"measured"}
    assert hours.value.to_dict() == {h: served(emaps, h) for h in window.hours()}


def test_hourly_dispatches_replace_estimates_with_measured_values_by_themselves(
    storage, participant, emaps
):
    """Dispatching every hour for a day and a half (plan, then collect what is due): hours
    fetched as estimates stay due and are fetched again until the source has measured them;
    one call per dispatch, and hours settled two days back are not asked again."""
    grid = participant.meter("grid")
    start = NOW - timedelta(days=3)
    asked = []
    for step in range(37):
        now = NOW + step * HOUR
        emaps.set_now(now)
        before = len(calls(emaps))
        for due in plan_meters(
            storage,
            participant,
            HourWindow(start, now),
            lambda m: CONNECTOR_TYPES[m.connector.type],
        ):
            if due.meter_id == "grid":
                asked.append(due.window)
                collect(storage, participant, "grid", access(emaps), due.window, now=now)
        assert len(calls(emaps)) - before == 1
    end = NOW + 36 * HOUR
    hours = stored(storage, participant, "grid", HourWindow(start, end))
    estimated = hours.index >= end - timedelta(hours=24)
    assert set(hours.quality[~estimated]) == {"measured"}  # the first day's estimates revised
    assert set(hours.quality[estimated]) == {"estimated"}
    assert hours.value.to_dict() == {h: served(emaps, h) for h in hours.index}
    # The last dispatch asked for no more than the previous one's 24 estimated hours and its own.
    assert asked[-1].start == end - timedelta(hours=25)
    assert grid.connector.zone == "BE"


# The participant XML.


def test_the_xml_reads_zone_and_emission_factor_type(participant):
    grid, lifecycle = participant.meter("grid"), participant.meter("grid-lca")
    assert grid.connector == ElectricityMapsSettings(zone="BE", emission_factor_type="direct")
    assert lifecycle.connector.emission_factor_type == "lifecycle"
    assert (grid.data_type, grid.unit, grid.credentials) == (
        "grid_intensity",
        "gCO2e/kWh",
        "acme-emaps",
    )
    assert participant.aggregation_method("grid_intensity") == "mean"
    assert grid.fingerprint != lifecycle.fingerprint


def errors_of(xml: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_participant(xml.encode(), "p.xml")
    return str(caught.value)


@pytest.mark.parametrize(
    ("old", "new", "line", "text"),
    [
        (
            '<meter id="grid" name="Belgian grid" dataType="grid_intensity"',
            '<meter id="grid" name="Belgian grid" dataType="energy"',
            6,
            "meter grid: Electricity Maps gives grid_intensity (gCO2e/kWh of zone BE), not energy",
        ),
        (
            ' credentials="acme-emaps">\n        <electricitymaps zone="BE"/>',
            '>\n        <electricitymaps zone="BE"/>',
            5,
            "needs credentials",
        ),
        ('zone="BE"/>', 'zone="Belgium"/>', 6, "zone"),
        (
            'emissionFactorType="lifecycle"',
            'emissionFactorType="marginal"',
            9,
            "emissionFactorType",
        ),
    ],
)
def test_the_xml_refuses_a_misused_connector_naming_the_line(old, new, line, text):
    assert CONFIG.count(old) == 1
    message = errors_of(CONFIG.replace(old, new))
    assert f"p.xml:{line}:" in message and text in message


def test_zone_keys_of_every_shape_are_accepted():
    for zone in ("DE", "US-CAL-CISO", "AUS-NSW", "DK-DK1", "US-MIDA-PJM"):
        participant = load_participant(CONFIG.replace('zone="XX"', f'zone="{zone}"').encode())
        assert participant.meter("grid-xx").connector.zone == zone


def test_overlapping_windows_archive_each_hour_once(storage, participant, emaps):
    start = NOW - timedelta(days=20)
    collect(storage, participant, "grid", access(emaps), HourWindow(start, start + 12 * 24 * HOUR))
    wider = HourWindow(start - 24 * HOUR, start + 15 * 24 * HOUR)
    collect(storage, participant, "grid", access(emaps), wider)
    stamps = [
        r["datetime"]
        for raw in archived(storage, "grid")
        for r in json.loads(raw["data"])["body"]["data"]
    ]
    assert len(stamps) == len(set(stamps)) == len(wider.hours())
