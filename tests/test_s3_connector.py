"""The s3 connector against moto's S3 server over HTTP on loopback, credentials from the
prefect-aws AwsCredentials block type."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from moto.server import ThreadedMotoServer
from prefect_aws import AwsCredentials

from connectors import connector_for
from meterflow.collection.catalog import archived
from meterflow.collection.collect import collect_meter
from meterflow.collection.rawlog import object_key
from meterflow.common.http import SourceRejected
from meterflow.common.storage import LocalStorage
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.participant_xml import load_participant
from meterflow.hours.hourly_store import read_hours
from tests.test_collect import interval_export

SECRET = "s3cr3t/" + "K" * 33
CONFIG = """<participant id="acme" name="Acme">
  <properties>
    <property id="hq" name="HQ" timezone="Australia/Sydney" country="AU" floorArea="100">
      <meter id="s3-main" dataType="energy" credentials="acme-aws">
        <s3 bucket="acme-meter-drop" prefix="exports/main/">
          <csv kind="interval" unit="kWh" intervalMinutes="30"/>
        </s3>
      </meter>
      <meter id="s3-nem" dataType="energy" credentials="acme-aws">
        <s3 bucket="acme-meter-drop" prefix="nem12/"><nem12 nmi="QB00000001" suffix="E1"/></s3>
      </meter>
      <meter id="s3-count" dataType="energy" credentials="acme-aws">
        <s3 bucket="acme-meter-drop" prefix="count/">
          <csv kind="interval" unit="kWh" intervalMinutes="30"/>
        </s3>
      </meter>
      <meter id="s3-big" dataType="energy" credentials="acme-aws">
        <s3 bucket="acme-meter-drop" prefix="big/">
          <csv kind="interval" unit="kWh" intervalMinutes="30"/>
        </s3>
      </meter>
      <meter id="s3-missing" dataType="energy" credentials="acme-aws">
        <s3 bucket="no-such-bucket"><csv kind="interval" unit="kWh"/></s3>
      </meter>
    </property>
  </properties>
</participant>"""
WINDOW = HourWindow.parse("2026-04-01T00:00", "2026-04-01T04:00")
NEM12 = (
    "100,NEM12,202604020000,MDP,RETAILER\n200,QB00000001,E1,E1,E1,N1,M1,KWH,30,\n"
    "300,20260401," + ",".join(["1.000"] * 48) + ",A,,,20260402000000,\n900\n"
)


@pytest.fixture(scope="module")
def s3_client():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    credentials = AwsCredentials(
        aws_access_key_id="AKIATESTTESTTEST",
        aws_secret_access_key=SECRET,
        region_name="ap-southeast-2",
        aws_client_parameters={"endpoint_url": f"http://{host}:{port}"},
    )
    client = credentials.get_s3_client()
    client.create_bucket(
        Bucket="acme-meter-drop",
        CreateBucketConfiguration={"LocationConstraint": "ap-southeast-2"},
    )
    client.put_object(
        Bucket="acme-meter-drop",
        Key="exports/main/day1.csv",
        Body=interval_export([1, 2, 3, 4, 5, 6, 7, 8]),
    )
    client.put_object(Bucket="acme-meter-drop", Key="nem12/QB_202604.csv", Body=NEM12.encode())
    yield client
    server.stop()


def collect(storage, meter_id, client):
    participant = load_participant(CONFIG.encode())
    meter = participant.meter(meter_id)
    connector = connector_for(meter, participant.id, s3_client=client)
    now = datetime(2026, 4, 2, tzinfo=UTC)
    return participant, collect_meter(storage, participant, meter, connector, WINDOW, now=now)


def test_objects_are_copied_to_the_raw_log_and_standardised(storage, s3_client):
    participant, result = collect(storage, "s3-main", s3_client)
    assert (result.payloads_new, result.hours_new, result.hours_missing) == (1, 4, 0)
    stored = read_hours(storage, participant.meter("s3-main"), WINDOW.days())
    assert stored.value.tolist() == [3.0, 7.0, 11.0, 15.0]
    (raw,) = archived(storage, "s3-main")
    assert raw["data"] == interval_export([1, 2, 3, 4, 5, 6, 7, 8])
    assert raw["source"] == "s3://acme-meter-drop/exports/main/day1.csv"
    _, again = collect(storage, "s3-main", s3_client)
    assert (again.payloads_new, again.hours_new) == (0, 0)
    assert not any(SECRET.encode() in storage.read(k) for k in storage.list())


def test_nem12_objects_use_the_nem12_parser(storage, s3_client):
    participant, result = collect(storage, "s3-nem", s3_client)
    stored = read_hours(storage, participant.meter("s3-nem"), ["2026-03-31", "2026-04-01"])
    # 48 half hours of 1 kWh in NEM time (UTC+10): 24 hours of 2 kWh, from 2026-03-31T14Z.
    assert len(stored) == 24 and set(stored.value) == {2.0}
    assert result.hours_missing == 0


def test_a_missing_bucket_fails_fast_naming_it_and_the_block(storage, s3_client):
    with pytest.raises(
        SourceRejected, match=r"\(block acme-aws\): s3://no-such-bucket/: NoSuchBucket"
    ):
        collect(storage, "s3-missing", s3_client)


def test_a_dispatch_downloads_only_new_or_rewritten_objects(storage, s3_client):
    """Counted as the client sends them: a rerun with nothing new lists the prefix but makes no
    GET; rewriting one of two objects makes exactly one; its new hours reach the hourly store."""
    sent: list[str] = []

    def count(request, **_) -> None:
        sent.append(request.method)

    s3_client.meta.events.register("before-send.s3", count)
    try:
        for name, values in (("a.csv", [1, 2, 3, 4]), ("b.csv", [0, 0, 0, 0, 5, 6, 7, 8])):
            s3_client.put_object(
                Bucket="acme-meter-drop", Key=f"count/{name}", Body=interval_export(values)
            )
        runs = []
        for rewrite in (None, None, "a.csv"):
            if rewrite:
                body = interval_export([10, 20, 30, 40])
                s3_client.put_object(Bucket="acme-meter-drop", Key=f"count/{rewrite}", Body=body)
            sent.clear()
            participant, result = collect(storage, "s3-count", s3_client)
            runs.append((sent.count("GET"), result.payloads_new))
    finally:
        s3_client.meta.events.unregister("before-send.s3", count)
    # LIST is a GET too: one per dispatch; object downloads on top of it.
    assert runs == [(1 + 2, 2), (1 + 0, 0), (1 + 1, 1)]
    hours = read_hours(storage, participant.meter("s3-count"), WINDOW.days())
    first = hours.set_index("hour_utc").value.loc["2026-04-01T00:00Z":"2026-04-01T01:00Z"]
    assert first.tolist() == [30.0, 70.0]  # the rewritten a.csv: 10+20, 30+40


@pytest.mark.parametrize("meter_id", ["s3-main", "s3-nem"])
def test_a_large_object_is_streamed_into_the_raw_log_and_parsed_from_there(
    tmp_path, s3_client, monkeypatch, meter_id
):
    """Above rawlog.LARGE (lowered here, with the chunk and part sizes, so there are many) an
    object goes to the raw log as it downloads and is parsed from there: its hours are those of
    an object read whole, its bytes are archived once, as fetched, and nothing is left staged."""
    whole = LocalStorage(tmp_path / "whole", "acme")
    _, expected = collect(whole, meter_id, s3_client)
    monkeypatch.setattr("meterflow.collection.rawlog.LARGE", 100)
    monkeypatch.setattr("meterflow.collection.rawlog.CHUNK", 64)
    monkeypatch.setattr("connectors.csv.PART", 128)
    streamed = LocalStorage(tmp_path / "streamed", "acme")
    _, result = collect(streamed, meter_id, s3_client)
    assert result.hours_missing == expected.hours_missing
    assert result.changed.equals(expected.changed) and len(result.changed) > 0
    (raw,) = archived(streamed, meter_id)
    assert streamed.list("raw/objects/") == [object_key(raw["sha256"])]
    assert raw["data"] == archived(whole, meter_id)[0]["data"]
    (run,) = [k for k in streamed.list("raw/") if k.endswith(".zip")]
    assert raw["data"] not in streamed.read(run)
    _, again = collect(streamed, meter_id, s3_client)
    assert (again.payloads_new, again.hours_new) == (0, 0)


def test_a_large_object_that_cannot_be_read_is_quarantined_whole(storage, s3_client, monkeypatch):
    """A streamed object is judged from the raw log like any other: a bad line in a later part
    rejects it naming that line, it is quarantined byte for byte, and the meter's other object
    still goes through."""
    monkeypatch.setattr("meterflow.collection.rawlog.LARGE", 100)
    monkeypatch.setattr("connectors.csv.PART", 64)
    good = interval_export([1, 2, 3, 4, 5, 6, 7, 8])
    bad = interval_export([1, 1, 1, 1, 1, 1]).replace(
        b",1\n2026-04-01T02:30", b",x\n2026-04-01T02:30"
    )
    for name, body in (("good.csv", good), ("bad.csv", bad)):
        s3_client.put_object(Bucket="acme-meter-drop", Key=f"big/{name}", Body=body)
    participant, result = collect(storage, "s3-big", s3_client)
    (rejected,) = result.rejected
    assert "s3://acme-meter-drop/big/bad.csv:6: 'x' is not a number" in rejected
    (kept,) = [k for k in storage.list("quarantine/s3-big/") if k.endswith("_bad.csv")]
    assert storage.read(kept) == bad
    stored = read_hours(storage, participant.meter("s3-big"), WINDOW.days())
    assert stored.value.tolist() == [3.0, 7.0, 11.0, 15.0]
