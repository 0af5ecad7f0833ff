"""Hostile and sloppy input, built here: every bad file ends in quarantine with a reason naming
it, the other files of the meter (and other meters) go through, nothing crashes, and nothing
outside the participant's storage is read or written."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import duckdb
import pandas as pd
import pytest

from connectors import connector_for
from meterflow.collection.catalog import archived
from meterflow.collection.collect import collect_meter
from meterflow.common.errors import ConfigError
from meterflow.common.storage import LocalStorage
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.participant_xml import load_participant
from meterflow.hours.hourly_store import read_hours
from meterflow.warehouse import DuckDBWarehouse
from meterflow.warehouse.loads import load_window

CONFIG = """<participant id="acme" name="Acme">
  <properties>
    <property id="hq" name="HQ" timezone="Australia/Sydney" country="AU" floorArea="100">
      <meter id="pv" dataType="solar"><push/></meter>
      <meter id="main" dataType="energy">
        <csv path="exports/main/" kind="interval" unit="kWh" intervalMinutes="30"/>
      </meter>
      <meter id="nmi" dataType="energy"><nem12 path="nem12/" nmi="NEM1201002" suffix="E1"/></meter>
      <meter id="net" dataType="energy" bidirectional="true" ratedKw="50"><push/></meter>
      <meter id="inside" dataType="temperature" minValue="5" maxValue="40"><push/></meter>
    </property>
  </properties>
</participant>"""
NOW = datetime(2026, 4, 3, tzinfo=UTC)
WINDOW = HourWindow.parse("2026-04-01T00:00", "2026-04-02T00:00")
SECRET = b"hour_utc,value,unit\n2026-04-01T05:00:00Z,987654321,kWh\n"
GOOD_PUSH = b"hour_utc,value,unit\n2026-04-01T00:00:00Z,1.5,kWh\n2026-04-01T01:00:00Z,2,kWh\n"


def push(*rows: str, unit: str = "kWh") -> bytes:
    return ("hour_utc,value,unit\n" + "".join(f"{r},{unit}\n" for r in rows)).encode()


def csv_export(*rows: str) -> bytes:
    return ("timestamp,value\n" + "".join(f"{r}\n" for r in rows)).encode()


def nem12(day: str = "20260401", values: int = 48, value: str = "0.5") -> bytes:
    return (
        "100,NEM12,202604020000,MDA1,Ret1\n"
        "200,NEM1201002,E1,1,E1,N1,01009,kWh,30,20260401\n"
        f"300,{day},{','.join([value] * values)},A,,,20260402000000,20260402000000\n"
        "900\n"
    ).encode()


# (folder under the participant's root, file name, bytes, what the reason must say)
BAD_FILES = [
    ("inbox/pv", "100% solar.csv", GOOD_PUSH, "file name '100% solar.csv' is not allowed"),
    ("inbox/pv", "my export.csv", GOOD_PUSH, "is not allowed"),
    ("inbox/pv", "données.csv", GOOD_PUSH, "is not allowed"),
    ("inbox/pv", ".hidden.csv", GOOD_PUSH, "file name '.hidden.csv' is not allowed"),
    ("inbox/pv", "..csv", GOOD_PUSH, "is not allowed"),
    ("inbox/pv", "line\nbreak.csv", GOOD_PUSH, "is not allowed"),
    ("inbox/pv", "y9999.csv", push("9999-12-31T23:00:00-01:00,1"), "y9999.csv:2: hour_utc"),
    ("inbox/pv", "future.csv", push("2026-04-01T00:00:00Z,1", "2090-01-01T00:00:00Z,1"), ":3: "),
    ("inbox/pv", "negative.csv", push("2026-04-01T03:00:00Z,-2"), "below 0 kW"),
    ("inbox/pv", "inf.csv", push("2026-04-01T03:00:00Z,inf"), "is not a finite number"),
    (
        "inbox/pv",
        "huge.json",
        b'[{"hour_utc": "2026-04-01T03:00:00Z", "value": 1e308, "unit": "kWh"}]',
        "above 100000 kW",
    ),
    (
        "inbox/pv",
        "bool.json",
        b'[{"hour_utc": "2026-04-01T03:00:00Z", "value": true, "unit": "kWh"}]',
        "value is not a number",
    ),
    ("inbox/net", "over-rated.csv", push("2026-04-01T03:00:00Z,-60"), "below -50 kW"),
    ("inbox/inside", "cold.csv", push("2026-04-01T03:00:00Z,2", unit="degC"), "below 5 degC"),
    ("exports/main", "bad name.csv", csv_export("2026-04-01T00:00:00Z,1"), "is not allowed"),
    ("exports/main", ".partial.csv", csv_export("2026-04-01T00:00:00Z,1"), "is not allowed"),
    ("exports/main", "y9999.csv", csv_export("9999-12-31T23:30:00-01:00,1"), "y9999.csv:2: "),
    (
        "exports/main",
        "epoch.csv",
        csv_export("2026-04-01T00:00:00Z,1", "2090-01-01T00:00Z,1"),
        "epoch.csv:3: value 1 kWh at 2090-01-01T00:00Z is later than now",
    ),
    ("exports/main", "minus.csv", csv_export("2026-04-01T05:00:00Z,-1"), "below 0 kW"),
    ("exports/main", "inf.csv", csv_export("2026-04-01T05:00:00Z,1e308"), "above 100000 kW"),
    ("nem12", "y9999.csv", nem12("99991231"), "y9999.csv:3: 300 record date '99991231'"),
    ("nem12", "future.csv", nem12("20900101"), "later than now"),
    ("nem12", "count.csv", nem12(values=47), "has 47 interval values before its quality"),
    ("nem12", "negative.csv", nem12(value="-1"), "below 0 kW"),
    ("nem12", "inf.csv", nem12(value="inf"), "is not a finite number"),
    ("nem12", "huge.csv", nem12(value="1e308"), "above 100000 kW"),
    ("nem12", "dir name/inner.csv", nem12(), "is not allowed"),
]
GOOD_FILES = [
    ("inbox/pv", "good.csv", GOOD_PUSH),
    ("inbox/net", "export.csv", push("2026-04-01T00:00:00Z,-40", "2026-04-01T01:00:00Z,12")),
    ("inbox/inside", "ok.csv", push("2026-04-01T00:00:00Z,21.5", unit="degC")),
    ("exports/main", "day.csv", csv_export("2026-04-01T00:00:00Z,1", "2026-04-01T00:30:00Z,1")),
    ("nem12", "day.csv", nem12()),
]


@pytest.fixture
def corpus(tmp_path):
    """The participant's storage filled with the corpus, and what lies outside it: a secret
    file, another participant's data and a FIFO (reading it would hang the test)."""
    data_root = tmp_path / "data"
    storage = LocalStorage(data_root, "acme")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    os.mkfifo(outside / "fifo")
    LocalStorage(data_root, "globex").write("inbox/pv/theirs.csv", GOOD_PUSH)
    for folder, name, body in [f[:3] for f in BAD_FILES] + GOOD_FILES:
        path = storage.root / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    links = {
        "inbox/pv/link-out.csv": outside / "secret.txt",
        "inbox/pv/link-fifo.csv": outside / "fifo",
        "inbox/pv/link-other.csv": data_root / "globex" / "inbox" / "pv" / "theirs.csv",
        "inbox/pv/linked-dir": outside,
        "exports/main/link.csv": outside / "secret.txt",
        "nem12/link.csv": outside / "secret.txt",
    }
    for name, target in links.items():
        os.symlink(target, storage.root / name)
    os.mkfifo(storage.root / "inbox" / "pv" / "a-fifo.csv")
    return storage, tmp_path, links


def snapshot(root, skip) -> dict[str, float]:
    """Every file outside the participant's storage, with its modification time."""
    return {
        str(p): p.lstat().st_mtime for p in root.rglob("*") if skip not in p.parents and p != skip
    }


def test_every_hostile_file_is_quarantined_and_the_rest_goes_through(corpus):
    storage, tmp_path, links = corpus
    participant = load_participant(CONFIG.encode())
    before = snapshot(tmp_path, storage.root)
    results = {}
    for meter in participant.meters:
        connector = connector_for(meter, participant.id)
        results[meter.id] = collect_meter(storage, participant, meter, connector, WINDOW, now=NOW)

    reasons = {}
    for key in storage.list("quarantine/"):
        if key.endswith(".reason.json"):
            body = json.loads(storage.read(key))
            reasons[body["source"]] = body
    for folder, name, _, expected in BAD_FILES:
        source = f"acme:{folder}/{name}"
        assert source in reasons, f"{name!r} not quarantined"
        assert reasons[source]["name"] == name.rsplit("/", 1)[-1]
        assert expected in reasons[source]["reason"], reasons[source]["reason"]
        assert source in reasons[source]["reason"]  # names the file
    for name in links:
        reason = reasons[f"acme:{name}"]["reason"]
        assert "a symbolic link: not read" in reason
    assert "not a regular file" in reasons["acme:inbox/pv/a-fifo.csv"]["reason"]

    # Every file left the inbox; the participant's own export folders are left as they were.
    assert [e.name for e in storage.scan("inbox/")] == []
    assert storage.root.joinpath("exports/main/bad name.csv").exists()
    # The good files went through, each meter on its own.
    assert read_hours(storage, participant.meter("pv"), WINDOW.days()).value.tolist() == [1.5, 2.0]
    net = read_hours(storage, participant.meter("net"), WINDOW.days())
    assert net.value.tolist() == [-40.0, 12.0]
    nem_day = ["2026-03-31", "2026-04-01"]  # NEM time is UTC+10
    assert len(read_hours(storage, participant.meter("nmi"), nem_day)) == 24
    assert read_hours(storage, participant.meter("main"), WINDOW.days()).value.tolist() == [2.0]
    assert all(r.hours_new > 0 for r in results.values())
    # Nothing outside the participant's storage was read (the FIFO would have hung) or written.
    assert snapshot(tmp_path, storage.root) == before
    stored = [storage.read(k) for k in storage.list() if not k.startswith("raw/")]
    stored += [raw["data"] for m in participant.meters for raw in archived(storage, m.id)]
    assert not any(SECRET in body for body in stored)  # what the links point at was not copied


def test_a_second_dispatch_quarantines_nothing_again_and_changes_nothing(corpus):
    storage, _, _ = corpus
    participant = load_participant(CONFIG.encode())

    def run() -> list[str]:
        rejected = []
        for meter in participant.meters:
            connector = connector_for(meter, participant.id)
            result = collect_meter(storage, participant, meter, connector, WINDOW, now=NOW)
            rejected += result.rejected
        return rejected

    assert run()
    stored = {k: storage.read(k) for k in storage.list() if not k.startswith("ledger/")}
    # The export folders still hold their bad files: they are known, not quarantined again.
    assert run() == []
    again = {k: storage.read(k) for k in storage.list() if not k.startswith("ledger/")}
    assert again == stored


def test_push_files_in_different_units_are_each_converted(storage):
    participant = load_participant(CONFIG.encode())
    meter = participant.meter("pv")
    storage.write("inbox/pv/a.csv", push("2026-04-01T00:00:00Z,1500", unit="Wh"))
    storage.write("inbox/pv/b.csv", push("2026-04-01T01:00:00Z,2", unit="kWh"))
    collect_meter(storage, participant, meter, connector_for(meter, "acme"), WINDOW, now=NOW)
    assert read_hours(storage, meter, WINDOW.days()).value.tolist() == [1.5, 2.0]


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ('dataType="temperature" ratedKw="5"', "ratedKw does not apply to a temperature meter"),
        ('dataType="energy" maxValue="5"', "maxValue does not apply to a energy meter"),
        ('dataType="occupancy" minValue="9" maxValue="2"', "minValue 9.0 is not below maxValue"),
        ('dataType="energy" ratedKw="-1"', "ratedKw"),
    ],
)
def test_plausibility_overrides_are_validated_with_their_line(attributes, message):
    xml = CONFIG.replace('<meter id="pv" dataType="solar">', f'<meter id="pv" {attributes}>')
    with pytest.raises(ConfigError) as caught:
        load_participant(xml.encode())
    assert message in str(caught.value) and "<participant.xml>:4:" in str(caught.value)


def test_no_load_builds_calendar_rows_beyond_the_data(storage, tmp_path):
    participant = load_participant(CONFIG.encode())
    meter = participant.meter("pv")
    storage.write("inbox/pv/day.csv", GOOD_PUSH)
    collect_meter(storage, participant, meter, connector_for(meter, "acme"), WINDOW, now=NOW)
    far = HourWindow.parse("2026-03-01T00:00", "2030-01-01T00:00")
    with DuckDBWarehouse(str(tmp_path / "w.duckdb")) as wh:
        load_window(wh, storage, participant, far, NOW)
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        first, last, rows = con.execute(
            "SELECT min(hour_utc), max(hour_utc), count(*) FROM dim_calendar"
        ).fetchone()
    assert (pd.Timestamp(first), pd.Timestamp(last), rows) == (
        pd.Timestamp("2026-04-01T00:00"),
        pd.Timestamp("2026-04-01T01:00"),
        2,
    )


def test_a_configuration_change_rejudges_refused_files_by_every_rule(storage):
    """Negative energy is refused on a meter that does not export; once the XML says it is
    bidirectional that file is accepted from the raw log, while a file of non-finite values and
    one of hours decades ahead stay refused. Later runs neither crash nor change anything."""
    before = CONFIG.replace(
        '<meter id="net" dataType="energy" bidirectional="true" ratedKw="50">',
        '<meter id="net" dataType="energy">',
    )
    storage.write("inbox/net/export.csv", push("2026-04-01T02:00:00Z,-3"))
    storage.write("inbox/net/inf.csv", push("2026-04-01T03:00:00Z,inf"))
    storage.write("inbox/net/later.csv", push("2090-04-01T03:00:00Z,1"))
    storage.write("inbox/net/good.csv", push("2026-04-01T04:00:00Z,2"))

    def collect(xml: str):
        participant = load_participant(xml.encode())
        meter = participant.meter("net")
        connector = connector_for(meter, "acme")
        result = collect_meter(storage, participant, meter, connector, WINDOW, now=NOW)
        return result, read_hours(storage, meter, [*WINDOW.days(), "2090-04-01"])

    result, hours = collect(before)
    assert len(result.rejected) == 3 and hours.value.tolist() == [2.0]
    changed = CONFIG.replace('bidirectional="true" ratedKw="50"', 'bidirectional="true"')
    _, hours = collect(changed)
    assert hours.set_index("hour_utc").value.to_dict() == {
        pd.Timestamp("2026-04-01T02:00Z"): -3.0,
        pd.Timestamp("2026-04-01T04:00Z"): 2.0,
    }
    stored = {k: storage.read(k) for k in storage.list() if not k.startswith("raw/")}
    for _ in range(2):
        result, again = collect(changed)
        assert result.rejected == [] and again.equals(hours)
    assert {k: storage.read(k) for k in storage.list() if not k.startswith("raw/")} == stored


def test_a_forecast_may_lie_ahead_by_its_horizon_and_no_further(storage):
    xml = CONFIG.replace(
        '<meter id="pv" dataType="solar">', '<meter id="pv" dataType="solar_forecast">'
    )
    participant = load_participant(xml.encode())
    meter = participant.meter("pv")
    storage.write("inbox/pv/week.csv", push("2026-04-10T00:00:00Z,3"))  # a week ahead of NOW
    storage.write("inbox/pv/month.csv", push("2026-04-25T00:00:00Z,3"))  # beyond 15 days
    ahead = HourWindow.parse("2026-04-01T00:00", "2026-04-30T00:00")
    result = collect_meter(
        storage, participant, meter, connector_for(meter, "acme"), ahead, now=NOW
    )
    assert len(result.rejected) == 1 and "month.csv:2: " in result.rejected[0]
    assert "later than" in result.rejected[0]
    assert read_hours(storage, meter, ahead.days()).hour_utc.tolist() == [
        pd.Timestamp("2026-04-10T00:00Z")
    ]
