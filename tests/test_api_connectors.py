"""API connectors against local servers that speak the real protocols (no patched clients)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from pydantic import SecretStr

from connectors import CONNECTOR_TYPES, connector_for
from emulators.openmeteo import OpenMeteoEmulator
from emulators.solcast import SolcastEmulator
from emulators.wattwatchers import WattwatchersEmulator
from meterflow.collection.collect import collect_meter
from meterflow.collection.plan import plan_meters
from meterflow.collection.sources import SourceAccess
from meterflow.common.http import Caller, HttpClient, SourceRejected
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.participant_xml import load_participant
from meterflow.hours.hourly_store import read_hours

WW_KEY = "key_" + "0123456789abcdef" * 2
SOLCAST_KEY = "sc-" + "f00dfeedcafe" * 3
DEVICE, OTHER_DEVICE, SILENT_DEVICE = "D123456789012", "D999999999999", "E000000000001"
SITE, SITE_2, SITE_3 = "ba75-e17a-7374-95ed", "abcd-0000-1111-2222", "abcd-3333-4444-5555"
CONFIG = f"""<participant id="acme" name="Acme">
  <properties>
    <property id="hq" name="HQ" timezone="Australia/Sydney" country="AU" floorArea="100">
      <meter id="ww-mains" dataType="energy" credentials="acme-ww">
        <wattwatchers device="{DEVICE}" channels="Mains" quantity="eRealPositive"/>
      </meter>
      <meter id="ww-pv" dataType="solar" credentials="acme-ww">
        <wattwatchers device="{DEVICE}" channels="Solar" quantity="eRealNegative"/>
      </meter>
      <meter id="ww-other" dataType="energy" credentials="acme-ww">
        <wattwatchers device="{OTHER_DEVICE}" channels="C1"/>
      </meter>
      <meter id="ww-silent" dataType="energy" credentials="acme-ww">
        <wattwatchers device="{SILENT_DEVICE}" channels="C1"/>
      </meter>
      <meter id="pv-1" dataType="solar" credentials="acme-solcast"><solcast site="{SITE}"/></meter>
      <meter id="pv-2" dataType="solar" credentials="acme-solcast">
        <solcast site="{SITE_2}"/>
      </meter>
      <meter id="pv-3" dataType="solar" credentials="acme-solcast">
        <solcast site="{SITE_3}"/>
      </meter>
      <meter id="outside" dataType="outdoor_temperature">
        <weather latitude="-33.8688" longitude="151.2093"/>
      </meter>
      <meter id="sun" dataType="irradiance"><weather latitude="-33.8688" longitude="151.2093"/>
      </meter>
    </property>
  </properties>
</participant>"""
DAY = HourWindow.parse("2026-04-01T00:00", "2026-04-02T00:00")
NOW = datetime(2026, 4, 10, tzinfo=UTC)


@pytest.fixture
def participant():
    return load_participant(CONFIG.encode())


@pytest.fixture
def wattwatchers():
    emulator = WattwatchersEmulator(
        api_keys={WW_KEY: [DEVICE, SILENT_DEVICE]}, seed=7, never_data={SILENT_DEVICE}
    )
    with emulator:
        yield emulator


def collect(storage, participant, meter_id, access, window, *, tmp_path=None, now=NOW):
    meter = participant.meter(meter_id)
    state = (tmp_path or storage.root) / ".platform"
    connector = connector_for(meter, participant.id, access, state_dir=state)
    return collect_meter(storage, participant, meter, connector, window, now=now)


def ww_access(emulator, key=WW_KEY) -> SourceAccess:
    return SourceAccess(block="acme-ww", base_url=emulator.url, api_key=SecretStr(key))


def expected_ww_kwh(emulator, channel: int, index: int, window: HourWindow) -> pd.Series:
    """kWh per UTC hour from the emulator's own Joules: stamps in (H, H+1h] belong to hour H."""
    stamps = range(int(window.start.timestamp()) + 300, int(window.end.timestamp()) + 1, 300)
    joules = {t: emulator.energy(DEVICE, channel, t)[index] for t in stamps}
    series = pd.Series(joules)
    hours = pd.to_datetime([t - 300 for t in series.index], unit="s", utc=True).floor("h")
    return (series.groupby(hours).sum() / 3.6e6).rename_axis("hour_utc")


def long_energy_calls(emulator) -> list:
    return [r for r in emulator.requests if r.path.startswith("/long-energy/")]


def test_wattwatchers_exact_kwh_for_a_day_with_end_of_interval_labels(
    storage, participant, wattwatchers
):
    result = collect(storage, participant, "ww-mains", ww_access(wattwatchers), DAY)
    assert result.hours_new == 24 and result.hours_missing == 0
    stored = read_hours(storage, participant.meter("ww-mains"), DAY.days()).set_index("hour_utc")
    expected = expected_ww_kwh(wattwatchers, 0, 0, DAY)
    assert stored.value.to_dict() == pytest.approx(expected.to_dict(), rel=1e-12)
    # Export of the solar channel is a positive magnitude in eRealNegative.
    collect(storage, participant, "ww-pv", ww_access(wattwatchers), DAY)
    pv = read_hours(storage, participant.meter("ww-pv"), DAY.days()).set_index("hour_utc")
    assert pv.value.to_dict() == pytest.approx(
        expected_ww_kwh(wattwatchers, 1, 1, DAY).to_dict(), rel=1e-12
    )
    assert pv.value.sum() > 0
    (call,) = long_energy_calls(wattwatchers)[:1]
    assert call.query["fromTs"] == str(int(DAY.start.timestamp()) + 1)
    assert call.bearer() == WW_KEY


def test_wattwatchers_pages_windows_longer_than_seven_days(storage, participant, wattwatchers):
    window = HourWindow.parse("2026-03-01T00:00", "2026-03-11T00:00")  # 10 days
    result = collect(storage, participant, "ww-mains", ww_access(wattwatchers), window)
    calls = long_energy_calls(wattwatchers)
    spans = [int(c.query["toTs"]) - int(c.query["fromTs"]) for c in calls]
    assert len(calls) == 2 and max(spans) <= 7 * 24 * 3600
    assert int(calls[0].query["toTs"]) == int(calls[1].query["fromTs"])  # no gap, no overlap
    assert result.hours_new == 240 and result.hours_missing == 0


def test_wattwatchers_recovers_from_429_and_5xx_with_calls_counted(
    storage, participant, wattwatchers
):
    wattwatchers.inject(429, path="/long-energy/", retry_after=1)
    wattwatchers.inject(500, path="/long-energy/")
    result = collect(storage, participant, "ww-mains", ww_access(wattwatchers), DAY)
    assert result.hours_new == 24
    assert len(long_energy_calls(wattwatchers)) == 3  # 429, 500, then the answer


@pytest.mark.parametrize(
    ("meter_id", "key", "status"), [("ww-mains", "key_wrong", 401), ("ww-other", WW_KEY, 404)]
)
def test_wattwatchers_auth_and_unknown_devices_fail_fast(
    storage, participant, wattwatchers, meter_id, key, status
):
    with pytest.raises(SourceRejected) as caught:
        collect(storage, participant, meter_id, ww_access(wattwatchers, key), DAY)
    message = str(caught.value)
    assert caught.value.status == status
    assert "(block acme-ww)" in message and f"acme/{meter_id}" in message
    assert "/devices/D" in message  # names the device
    assert len(wattwatchers.requests) == 1  # no retry of a refusal
    assert key not in message


def test_wattwatchers_never_had_data_and_empty_windows_are_not_errors(
    storage, participant, wattwatchers
):
    silent = collect(storage, participant, "ww-silent", ww_access(wattwatchers), DAY)
    assert (silent.payloads_new, silent.hours_missing) == (0, 24)
    early = HourWindow.parse("2020-01-01T00:00", "2020-01-02T00:00")  # before the first record
    empty = collect(storage, participant, "ww-mains", ww_access(wattwatchers), early)
    assert (empty.payloads_new, empty.hours_missing) == (0, 24)


def test_wattwatchers_back_filled_hours_arrive_on_a_later_fetch(storage, participant, wattwatchers):
    outage = HourWindow.parse("2026-04-01T10:00", "2026-04-01T13:00")
    # Stamps mark interval ends: hours 10-12 are the stamps in (10:00, 13:00].
    wattwatchers.hide(int(outage.start.timestamp()) + 1, int(outage.end.timestamp()) + 1)
    first = collect(storage, participant, "ww-mains", ww_access(wattwatchers), DAY)
    assert first.hours_missing == 3
    wattwatchers.release()
    later = collect(storage, participant, "ww-mains", ww_access(wattwatchers), DAY)
    assert sorted(later.changed.hour_utc) == list(outage.hours())
    assert later.hours_missing == 0


def test_no_key_appears_in_raw_log_quarantine_logs_or_errors(
    storage, participant, wattwatchers, caplog
):
    caplog.set_level(logging.DEBUG)
    wattwatchers.inject(500, path="/long-energy/")
    collect(storage, participant, "ww-mains", ww_access(wattwatchers), DAY)
    with pytest.raises(SourceRejected) as caught:
        collect(storage, participant, "ww-other", ww_access(wattwatchers), DAY)
    files = [storage.read(k) for k in storage.list()]
    assert files and not any(WW_KEY.encode() in body for body in files)
    assert WW_KEY not in caplog.text and "retry" in caplog.text
    assert WW_KEY not in str(caught.value)


@pytest.fixture
def solcast():
    emulator = SolcastEmulator(api_keys={SOLCAST_KEY: [SITE, SITE_2, SITE_3]}, seed=3, now=NOW)
    with emulator:
        yield emulator


def solcast_access(emulator, limit=10) -> SourceAccess:
    return SourceAccess(
        block="acme-solcast",
        base_url=emulator.url,
        api_key=SecretStr(SOLCAST_KEY),
        daily_call_limit=limit,
    )


def test_solcast_exact_kwh_from_average_kw(storage, participant, solcast, tmp_path):
    window = HourWindow(NOW - timedelta(days=2), NOW)
    result = collect(
        storage, participant, "pv-1", solcast_access(solcast), window, tmp_path=tmp_path
    )
    assert result.hours_missing == 0
    stored = read_hours(storage, participant.meter("pv-1"), window.days()).set_index("hour_utc")
    for hour in window.hours()[::7]:
        ends = [hour + timedelta(minutes=30), hour + timedelta(hours=1)]
        kwh = sum(solcast.pv_estimate(SITE, end.to_pydatetime()) * 0.5 for end in ends)
        assert stored.value[hour] == pytest.approx(kwh, rel=1e-12), hour
    (call,) = solcast.requests
    assert call.query["hours"] == "168" and call.bearer() == SOLCAST_KEY


def test_solcast_budget_is_shared_by_meters_of_one_key(storage, participant, solcast, tmp_path):
    window = HourWindow(NOW - timedelta(days=1), NOW)
    access = solcast_access(solcast, limit=2)
    results = [
        collect(storage, participant, m, access, window, tmp_path=tmp_path)
        for m in ("pv-1", "pv-2", "pv-3")
    ]
    assert [r.deferred is None for r in results] == [True, True, False]
    assert results[2].deferred.endswith(
        "the daily budget of 2 calls is used (2 calls today); next call after 00:00 UTC"
    )
    assert len(solcast.requests) == 2  # the third meter made no call


def test_solcast_daily_limit_answer_defers_until_midnight(storage, participant, tmp_path):
    emulator = SolcastEmulator(api_keys={SOLCAST_KEY: [SITE, SITE_2]}, now=NOW, daily_limit=1)
    with emulator:
        window = HourWindow(NOW - timedelta(days=1), NOW)
        access = solcast_access(emulator)
        first = collect(storage, participant, "pv-1", access, window, tmp_path=tmp_path)
        second = collect(storage, participant, "pv-2", access, window, tmp_path=tmp_path)
        third = collect(storage, participant, "pv-2", access, window, tmp_path=tmp_path)
        assert first.deferred is None and first.hours_missing == 0
        assert "exceeded your free daily limit" in second.deferred
        assert len(emulator.requests) == 2  # no call after the limit, and it says why
        assert third.deferred.endswith(
            "the source answered 'daily limit' after 2 calls today; next call after 00:00 UTC"
        )
        tomorrow = NOW + timedelta(days=1)
        emulator.set_now(tomorrow)
        again = collect(
            storage, participant, "pv-2", access, window, tmp_path=tmp_path, now=tomorrow
        )
        assert again.deferred is None and again.hours_missing == 0


def test_solcast_is_asked_at_most_every_3_hours_over_a_day_of_hourly_dispatches(
    storage, participant, solcast, tmp_path
):
    """24 hourly dispatches with a controlled clock (plan, then collect what is planned): each
    site is called at most every 3 hours, 8 times, although most answers add nothing new to
    the raw log (the call is recorded apart from the archive)."""
    calls_per_dispatch = []
    for step in range(24):
        now = NOW + timedelta(hours=step)
        solcast.set_now(now)
        before = len(solcast.requests)
        window = HourWindow(now - timedelta(days=1), now)
        for due in plan_meters(
            storage, participant, window, lambda m: CONNECTOR_TYPES[m.connector.type]
        ):
            if due.meter_id == "pv-1":
                result = collect(
                    storage, participant, "pv-1", solcast_access(solcast, limit=10), due.window,
                    tmp_path=tmp_path, now=now,
                )  # fmt: skip
                assert result.deferred is None and result.error is None
        calls_per_dispatch.append(len(solcast.requests) - before)
    assert calls_per_dispatch == [1, 0, 0] * 8
    assert {r.path for r in solcast.requests} == {f"/rooftop_sites/{SITE}/estimated_actuals"}


def test_solcast_busy_429_is_retried(storage, participant, solcast, tmp_path):
    solcast.inject(429, retry_after=1)
    window = HourWindow(NOW - timedelta(days=1), NOW)
    result = collect(
        storage, participant, "pv-1", solcast_access(solcast), window, tmp_path=tmp_path
    )
    assert result.deferred is None and result.hours_missing == 0
    assert len(solcast.requests) == 2


def test_weather_hourly_temperature_and_radiation(storage, participant):
    with OpenMeteoEmulator(seed=5) as emulator:
        access = SourceAccess(block="open-meteo", base_url=emulator.url)
        collect(storage, participant, "outside", access, DAY)
        collect(storage, participant, "sun", access, DAY)
        (call, _) = emulator.requests
    assert call.query["hourly"] == "temperature_2m" and call.query["timezone"] == "UTC"
    temps = read_hours(storage, participant.meter("outside"), DAY.days()).set_index("hour_utc")
    sun = read_hours(storage, participant.meter("sun"), DAY.days()).set_index("hour_utc")
    lat, lon = -33.8688, 151.2093
    for hour in DAY.hours():
        after = (hour + timedelta(hours=1)).to_pydatetime()
        mean = (
            emulator.temperature(lat, lon, hour.to_pydatetime())
            + emulator.temperature(lat, lon, after)
        ) / 2
        assert temps.value[hour] == pytest.approx(mean, rel=1e-12)
        assert sun.value[hour] == pytest.approx(emulator.radiation(lat, lon, after), abs=1e-9)
    assert len(temps) == 24 and set(temps.unit) == {"degC"} and set(sun.unit) == {"W/m2"}


def test_solcast_forecasts_feed_the_forecast_data_type(storage, solcast, tmp_path):
    config = CONFIG.replace(
        '<solcast site="' + SITE_3 + '"/>', '<solcast site="' + SITE_3 + '" product="forecasts"/>'
    ).replace('<meter id="pv-3" dataType="solar"', '<meter id="pv-3" dataType="solar_forecast"')
    participant = load_participant(config.encode())
    ahead = HourWindow(NOW, NOW + timedelta(days=1))
    result = collect(
        storage, participant, "pv-3", solcast_access(solcast), ahead, tmp_path=tmp_path
    )
    assert result.hours_missing == 0
    assert len(read_hours(storage, participant.meter("pv-3"), ahead.days())) == 24
    (call,) = solcast.requests
    assert call.path.endswith("/forecasts")


def test_an_exhausted_per_second_budget_pauses_the_next_call(wattwatchers):
    wattwatchers.inject(
        200, path="/devices", headers={"X-RateLimit-TpsRemaining": "0", "X-RateLimit-TpsReset": "1"}
    )
    caller = Caller("acme", "ww-mains", "wattwatchers-pause-test", "acme-ww")
    client = HttpClient(caller, headers={"Authorization": f"Bearer {WW_KEY}"})
    client.get(f"{wattwatchers.url}/devices")
    started = time.monotonic()
    client.get(f"{wattwatchers.url}/devices")
    assert time.monotonic() - started >= 0.9


def test_meters_sharing_a_block_load_it_once_a_shard_and_the_next_shard_reads_it_again(
    prefect_server, tmp_path, monkeypatch
):
    """A fleet naming one credentials block costs one read of it per shard, not one per meter
    (each is a round trip to Prefect's API); a key changed in the block is used by the next."""
    from blocks import WattwatchersCredentials
    from meterflow.collection.plan import MeterWindow
    from meterflow.common.storage import CONFIG_KEY, LocalStorage
    from meterflow.configuration.fleets import participant_xml, wattwatchers_meter
    from tasks import worker

    devices = [f"D{n:012d}" for n in range(3)]
    rotated = "key_" + "fedcba9876543210" * 2
    emulator = WattwatchersEmulator(
        api_keys={WW_KEY: devices, rotated: devices}, first_ts=int(DAY.start.timestamp())
    )
    meters = [wattwatchers_meter(f"ww-{n}", d, "fleet-ww") for n, d in enumerate(devices)]
    xml = participant_xml("fleet", meters)
    LocalStorage(tmp_path, "fleet").write(CONFIG_KEY, xml)
    fleet = load_participant(xml)
    reads = []
    read = WattwatchersCredentials.load
    monkeypatch.setattr(
        WattwatchersCredentials,
        "load",
        classmethod(lambda cls, name, **kw: reads.append(name) or read(name, **kw)),
    )

    def collect_day(day: HourWindow) -> set[str]:
        planned = [MeterWindow(m.id, day, len(day.hours())) for m in fleet.meters]
        seen = len(emulator.requests)
        report = worker.collect_shard(str(tmp_path), fleet, planned, "shard", None, False)
        assert [o.status for o in report.outcomes] == ["ok"] * 3
        return {r.headers["Authorization"] for r in emulator.requests[seen:]}

    with emulator:
        WattwatchersCredentials(api_key=WW_KEY, base_url=emulator.url).save("fleet-ww")
        assert collect_day(DAY) == {f"Bearer {WW_KEY}"}
        assert reads == ["fleet-ww"]
        WattwatchersCredentials(api_key=rotated, base_url=emulator.url).save(
            "fleet-ww", overwrite=True
        )
        assert collect_day(HourWindow(DAY.end, DAY.end + timedelta(days=1))) == {
            f"Bearer {rotated}"
        }
        assert reads == ["fleet-ww", "fleet-ww"]
