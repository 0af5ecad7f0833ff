"""Re-fetching: an incomplete hour is final once its source had time to fill it in, and the raw
log keeps each source record once, however the requests that returned it were paged. Against the
Wattwatchers and Open-Meteo emulators over HTTP on loopback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from connectors import CONNECTOR_TYPES, connector_for
from emulators.openmeteo import OpenMeteoEmulator
from emulators.wattwatchers import WattwatchersEmulator
from meterflow.collection.catalog import archived
from meterflow.collection.collect import collect_meter
from meterflow.collection.plan import plan_meters
from meterflow.collection.sources import SourceAccess
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.participant_xml import load_participant
from meterflow.hours.hourly_store import read_hours

KEY = "key_" + "5e771e" * 6
DEVICE = "D123456789012"
CONFIG = f"""<participant id="acme" name="Acme">
  <properties>
    <property id="hq" name="HQ" timezone="Australia/Sydney" country="AU" floorArea="100">
      <meter id="mains" dataType="energy" credentials="acme-ww">
        <wattwatchers device="{DEVICE}" channels="Mains" quantity="eRealPositive"/>
      </meter>
      <meter id="outside" dataType="outdoor_temperature">
        <weather latitude="-33.8688" longitude="151.2093"/>
      </meter>
    </property>
  </properties>
</participant>"""
DAY_START = datetime(2026, 4, 1, tzinfo=UTC)
# One 5-minute record of hour 10 never comes: that hour stays at 11 of 12 intervals.
HOLE = int((DAY_START + timedelta(hours=10, minutes=30)).timestamp())


@pytest.fixture
def participant():
    return load_participant(CONFIG.encode())


@pytest.fixture
def wattwatchers():
    with WattwatchersEmulator(api_keys={KEY: [DEVICE]}, seed=5, gaps=[(HOLE, HOLE + 1)]) as e:
        yield e


def access(emulator) -> SourceAccess:
    return SourceAccess(block="acme-ww", base_url=emulator.url, api_key=SecretStr(KEY))


def hourly_dispatch(storage, participant, emulator, now: datetime) -> int:
    """What an hourly dispatch does for the Wattwatchers meter at `now` (the day so far): plan,
    then collect the planned window; the number of calls the source saw."""
    emulator.set_now(int(now.timestamp()))
    before = len(emulator.requests)
    window = HourWindow(DAY_START, now)
    planned = plan_meters(storage, participant, window, lambda m: CONNECTOR_TYPES[m.connector.type])
    for meter_window in planned:
        if meter_window.meter_id == "mains":
            collect(storage, participant, emulator, meter_window.window, now)
    return len(emulator.requests) - before


def collect(storage, participant, emulator, window, now, **options):
    meter = participant.meter("mains")
    connector = connector_for(meter, participant.id, access(emulator))
    return collect_meter(storage, participant, meter, connector, window, now=now, **options)


def raw_objects(storage, meter_id: str) -> list[dict]:
    """The payloads archived for the meter (catalog row and bytes each)."""
    return archived(storage, meter_id)


def test_an_incomplete_hour_is_final_after_settle_time_and_not_fetched_again(
    storage, participant, wattwatchers
):
    at = [DAY_START + timedelta(hours=h) for h in range(12, 20)]
    for now in at:
        hourly_dispatch(storage, participant, wattwatchers, now)
    # Hour 10 is due while the device could still back-fill it (6 h); the fetch at 17:00 saw
    # data 6 h past it, so from then on it is final and each dispatch asks for new hours only.
    first_asked = [
        datetime.fromtimestamp(int(r.query["fromTs"]) - 1, UTC)
        for r in wattwatchers.requests
        if r.path.startswith("/long-energy/")
    ]
    ten = DAY_START + timedelta(hours=10)
    assert first_asked == [DAY_START, ten, ten, ten, ten, ten, *at[-3:-1]]
    hour_10 = read_hours(storage, participant.meter("mains"), ["2026-04-01"]).iloc[10]
    assert (hour_10.coverage, hour_10.quality) == (pytest.approx(11 / 12), "measured")
    # A rerun at 19:00: every hour is complete or final, so no source call, no raw object.
    raws = len(raw_objects(storage, "mains"))
    assert hourly_dispatch(storage, participant, wattwatchers, at[-1]) == 0
    assert len(raw_objects(storage, "mains")) == raws
    # A forced rerun still fetches (and archives nothing new: every record is held already).
    forced = collect(
        storage,
        participant,
        wattwatchers,
        HourWindow(DAY_START, at[-1]),
        at[-1],
        force_override=True,
    )
    assert forced.payloads_new == 0 and len(raw_objects(storage, "mains")) == raws


def test_the_raw_log_keeps_each_record_once_however_requests_were_paged(
    storage, participant, wattwatchers
):
    h = [DAY_START + timedelta(hours=n) for n in (0, 6, 12, 18, 19)]
    wattwatchers.set_now(int(h[4].timestamp()))
    collect(storage, participant, wattwatchers, HourWindow(h[0], h[2]), h[2])
    collect(storage, participant, wattwatchers, HourWindow(h[1], h[3]), h[3])
    collect(storage, participant, wattwatchers, HourWindow(h[0], h[3]), h[4], force_override=True)
    stamps = []
    for raw in raw_objects(storage, "mains"):
        stamps += [r["timestamp"] for r in json.loads(raw["data"])["records"]]
    assert len(stamps) == len(set(stamps))  # no record twice
    assert sorted(stamps) == [
        t for t in range(int(h[0].timestamp()) + 300, int(h[3].timestamp()) + 1, 300) if t != HOLE
    ]
    fetched = [raw["records_fetched"] for raw in raw_objects(storage, "mains")]
    assert fetched == [143, 143]  # what each call returned
    hours = read_hours(storage, participant.meter("mains"), ["2026-04-01"])
    assert len(hours) == 18 and hours.value.notna().all()


def test_overlapping_weather_ranges_archive_each_hour_once(storage, participant):
    meter = participant.meter("outside")
    with OpenMeteoEmulator(seed=2) as emulator:
        connector = connector_for(meter, participant.id, SourceAccess(base_url=emulator.url))
        first = HourWindow(DAY_START, DAY_START + timedelta(days=2))
        second = HourWindow(DAY_START + timedelta(days=1), DAY_START + timedelta(days=3))
        now = DAY_START + timedelta(days=30)
        collect_meter(storage, participant, meter, connector, first, now=now)
        collect_meter(storage, participant, meter, connector, second, now=now)
    times = []
    for raw in raw_objects(storage, "outside"):
        times += json.loads(raw["data"])["body"]["hourly"]["time"]
    assert len(times) == len(set(times)) == 4 * 24  # whole days, 1 April to 4 April
