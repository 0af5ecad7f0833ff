"""Participant XML: examples validate; every kind of error names the file and line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from meterflow.common.errors import ConfigError
from meterflow.common.storage import CONFIG_KEY, LocalStorage
from meterflow.configuration.participant_xml import MAX_BYTES, load_participant
from meterflow.configuration.participants import read_configuration

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "configs" / "examples").glob("*.xml"))
MERTERFLOW = ROOT / ".venv" / "bin" / "meterflow"

VALID = """<participant id="acme" name="Acme">
  <properties>
    <property id="p1" name="One" timezone="Australia/Sydney" country="AU" floorArea="100">
      <meter id="m1" dataType="energy">
        <csv path="exports/m1/" kind="interval" unit="kWh"/>
      </meter>
    </property>
  </properties>
</participant>
"""


def errors_of(xml: str | bytes) -> str:
    with pytest.raises(ConfigError) as caught:
        load_participant(xml.encode() if isinstance(xml, str) else xml, "p.xml")
    return str(caught.value)


def test_examples_cover_two_participants_three_properties_two_zones_every_connector():
    participants = [load_participant(path) for path in EXAMPLES]
    properties = [p for participant in participants for p in participant.properties]
    meters = [m for participant in participants for m in participant.meters]
    assert len(participants) == 2
    assert len(properties) >= 3
    assert len({p.timezone for p in properties}) >= 2
    file_fed = {"csv", "nem12", "push"}
    api = {"wattwatchers", "solcast", "weather", "electricitymaps"}
    assert file_fed | api <= {m.connector.type for m in meters}


def test_models_carry_the_configuration():
    participant = load_participant(VALID.encode())
    (prop,) = participant.properties
    assert (prop.timezone, prop.country, prop.floor_area_m2) == ("Australia/Sydney", "AU", 100.0)
    meter = participant.meter("m1")
    assert (meter.property_id, meter.unit, meter.connector.kind) == ("p1", "kWh", "interval")
    assert participant.aggregation_method("temperature") == "mean"


@pytest.mark.parametrize(
    ("old", "new", "line", "text"),
    [
        ('timezone="Australia/Sydney"', 'timezone="Mars/Olympus"', 3, "unknown time zone"),
        (' floorArea="100"', "", 3, "floorArea"),
        ('unit="kWh"', 'unit="furlongs"', 5, "furlongs"),
        ('id="m1"', 'id="../globex"', 4, "../globex"),
        ('path="exports/m1/"', 'path="../globex/raw/"', 5, "../globex/raw/"),
        ('kind="interval" unit="kWh"', 'kind="interval" unit="degC"', 5, "cannot feed"),
        (
            '<meter id="m1" dataType="energy">',
            '<meter id="m1" dataType="energy" credentials="key_AbCdEfGhIjKlMnOpQrStUvWxYz012345">',
            4,
            "credentials",
        ),
        ('unit="kWh"', 'unit="kWh" timestampFormat="%Q %d"', 5, "timestampFormat '%Q %d': not a"),
        ('unit="kWh"', 'unit="kWh" timestampFormat="%H:%M"', 5, "needs the year, month and day"),
        ('unit="kWh"', 'unit="kWh" timestampColumn=""', 5, "timestampColumn must name a column"),
        ('unit="kWh"', 'unit="kWh" valueColumn=" "', 5, "valueColumn must name a column"),
        ('unit="kWh"', 'unit="kWh" delimiter=""', 5, "delimiter must be one character"),
    ],
)
def test_errors_name_the_line(old, new, line, text):
    message = errors_of(VALID.replace(old, new))
    assert f"p.xml:{line}:" in message
    assert text in message


def test_all_errors_are_reported_at_once():
    xml = VALID.replace('unit="kWh"', 'unit="furlongs"').replace('name="One"', "")
    message = errors_of(xml)
    assert "p.xml:3:" in message and "p.xml:5:" in message


def test_duplicate_meter_ids_are_refused():
    second = '<meter id="m1" dataType="energy"><push/></meter>\n    </property>'
    message = errors_of(VALID.replace("</property>", second, 1))
    assert "p.xml:" in message and "duplicate" in message.lower()


def test_malformed_xml_names_the_line():
    assert "p.xml:6: not well-formed" in errors_of(VALID.replace("</meter>", "</metre>"))


@pytest.mark.parametrize(
    "prologue",
    [
        '<!DOCTYPE participant [<!ENTITY boom "boom">]>',
        '<!DOCTYPE participant SYSTEM "file:///etc/passwd">',
        "<!DOCTYPE participant>",
    ],
)
def test_dtds_and_entities_are_refused(prologue):
    assert "p.xml:1: DTD and entity declarations are not allowed" in errors_of(prologue + VALID)


def test_size_and_depth_are_bounded():
    assert "larger than" in errors_of(VALID + " " * MAX_BYTES)
    deep = VALID.replace("<csv", "<a>" * 40 + "<csv").replace(
        "/>\n      </meter>", "/>" + "</a>" * 40 + "</meter>"
    )
    assert "nesting deeper" in errors_of(deep)


def test_configuration_must_belong_to_its_storage(tmp_path):
    storage = LocalStorage(tmp_path, "globex")
    storage.write(CONFIG_KEY, VALID.encode())  # a file claiming to be acme's
    with pytest.raises(ConfigError, match="does not match its storage 'globex'"):
        read_configuration(storage)


def test_validate_command_prints_ok_or_errors_and_exit_code(tmp_path):
    broken = tmp_path / "broken.xml"
    broken.write_text(VALID.replace('timezone="Australia/Sydney"', 'timezone="Nowhere"'))
    ok = subprocess.run([MERTERFLOW, "validate", *EXAMPLES], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count(": OK") == 2
    bad = subprocess.run(
        [MERTERFLOW, "validate", EXAMPLES[0], broken], capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert f"error: {broken}:3: property p1: unknown time zone 'Nowhere'" in bad.stderr
