"""Property-based tests: whatever bytes arrive, the push parser, the CSV parser and the XML
loader either return readings or raise Meterflow's own typed errors, never anything else. The
readings they return go through the plausibility check and standardisation just as safely."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import UTC, datetime

import pandas as pd
import xmlschema
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from connectors.csv import parse_csv, parse_csv_files
from connectors.push import parse_push
from meterflow.collection.collect import standardise_meter
from meterflow.common.errors import MeterflowError
from meterflow.configuration import participant_xml
from meterflow.configuration.config import CsvFormat, Meter, PushSettings
from meterflow.configuration.participant_xml import load_participant
from meterflow.standardisation.plausibility import check_readings

EXAMPLES = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = datetime(2026, 4, 3, tzinfo=UTC)

years = st.sampled_from(["2026", "1899", "2200", "9999", "0001", "1970", "2262", "2026"])
offsets = st.sampled_from(["Z", "+00:00", "-01:00", "+10:00", "+14:00", "-12:00", "", "+25:00"])
stamps = st.one_of(
    st.builds(
        lambda y, mo, d, h, mi, off: f"{y}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:00{off}",
        years,
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 25),
        st.sampled_from([0, 0, 0, 30, 59, 60]),
        offsets,
    ),
    st.sampled_from(["", "NaN", "2026-04-05 02:30", "2026-10-04 02:30", "1e15", "-1"]),
    st.text(max_size=30),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["", "NaN", "nan", "null", "N/A", "inf", "-inf", "1e308", "-0", "1,5"]),
    st.text(max_size=10),
)
units = st.sampled_from(["kWh", "Wh", "MWh", "degC", "kW", "persons", "W/m2", "", "kwh", "x"])
qualities = st.sampled_from(["", "measured", "estimated", "missing", "interpolated", "bogus"])
coverages = st.one_of(numbers, st.sampled_from(["1", "0", "0.5", "2", "-1"]))
cells = st.one_of(stamps, numbers, units, qualities, st.text(max_size=12))


def csv_text(header: list[str], rows: list[list[str]], delimiter: str = ",") -> bytes:
    lines = [delimiter.join(header)] + [delimiter.join(row) for row in rows]
    return "\n".join(lines).encode("utf-8", "surrogatepass")


push_csv = st.builds(
    lambda rows, header: csv_text(header, rows),
    st.lists(st.lists(cells, min_size=0, max_size=7), max_size=8),
    st.one_of(
        st.just(["hour_utc", "value", "unit", "quality", "coverage"]),
        st.just(["hour_utc", "value", "unit"]),
        st.lists(st.sampled_from(["hour_utc", "value", "unit", "x", ""]), max_size=6),
    ),
) | st.builds(
    lambda rows: csv_text(
        ["hour_utc", "value", "unit", "quality", "coverage"],
        [list(r) for r in rows],
    ),
    st.lists(st.tuples(stamps, numbers, units, qualities, coverages), max_size=10),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
json_reading = st.fixed_dictionaries(
    {},
    optional={
        "hour_utc": stamps | json_values,
        "value": st.floats() | st.integers() | numbers | json_values,
        "unit": units | json_values,
        "quality": qualities | json_values,
        "coverage": st.floats() | coverages | json_values,
    },
)
push_json = st.one_of(
    st.lists(json_reading, max_size=6).map(lambda r: json.dumps(r).encode()),
    st.lists(json_reading, max_size=6).map(lambda r: json.dumps({"readings": r}).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
)


def meter_for(data_type: str, connector) -> Meter:
    return Meter(id="m", property_id="p", data_type=data_type, connector=connector)


def downstream(readings, meter: Meter) -> None:
    """What collection does with parsed readings: check them, then standardise them."""
    try:
        check_readings(readings, meter, NOW)
    except MeterflowError:
        return
    if len(readings):
        standardise_meter([readings], meter)


@EXAMPLES
@given(
    body=st.one_of(push_csv, push_json, st.binary(max_size=200)),
    name=st.sampled_from(["a.csv", "a.json", "a.CSV", "a.txt"]),
    data_type=st.sampled_from(
        ["energy", "solar", "temperature", "occupancy", "irradiance", "grid_intensity"]
    ),
)
def test_the_push_parser_raises_only_its_own_errors(body, name, data_type):
    try:
        readings = parse_push(body, name, data_type)
    except MeterflowError:
        return
    downstream(readings, meter_for(data_type, PushSettings()))


csv_formats = st.builds(
    CsvFormat,
    kind=st.sampled_from(["interval", "cumulative", "instantaneous"]),
    unit=st.sampled_from(["kWh", "Wh", "kW", "degC", "degF"]),
    timestamp_format=st.sampled_from(["iso", "epoch", "%d/%m/%Y %H:%M", "%Y%m%d%H%M"]),
    timezone=st.sampled_from(["UTC", "Australia/Sydney", "Europe/London", "+10:00", "-03:30"]),
    label=st.sampled_from(["start", "end"]),
    delimiter=st.sampled_from([",", ";", "\t"]),
    interval_minutes=st.sampled_from([None, 5, 30]),
    register_max=st.sampled_from([None, 99999.9]),
    max_gap_minutes=st.sampled_from([None, 10]),
).filter(  # as the XML allows: instantaneous readings are never energy, the others always are
    lambda f: (f.kind == "instantaneous") == (f.unit in ("kW", "degC", "degF"))
)
csv_stamps = st.one_of(
    stamps,
    st.builds(
        lambda d, mo, y, h, mi: f"{d:02d}/{mo:02d}/{y} {h:02d}:{mi:02d}",
        st.integers(0, 32),
        st.integers(0, 13),
        years,
        st.integers(0, 24),
        st.integers(0, 60),
    ),
    st.integers(-(10**12), 10**13).map(str),
)


@EXAMPLES
@given(
    settings_=csv_formats,
    rows=st.lists(st.tuples(csv_stamps, numbers), max_size=12),
    raw=st.one_of(st.none(), st.binary(max_size=120)),
    header=st.sampled_from([["timestamp", "value"], ["value", "timestamp"], ["t", "v"], []]),
)
# A register meter whose only reading is blank (found by CI).
@example(
    settings_=CsvFormat(kind="cumulative", unit="kWh", timestamp_format="epoch"),
    rows=[("", "0.0")],
    raw=None,
    header=["value", "timestamp"],
)
def test_the_csv_parser_raises_only_its_own_errors(settings_, rows, raw, header):
    if raw is not None:
        body = raw
    else:
        body = csv_text(header, [list(r) for r in rows], settings_.delimiter)
    try:
        readings = parse_csv(body, settings_)
    except MeterflowError:
        return
    data_type = "energy" if settings_.unit in ("kWh", "Wh", "kW") else "temperature"
    connector = {"type": "csv", "path": "x/", **settings_.model_dump(exclude={"type"})}
    downstream(
        readings,
        Meter.model_validate(
            {"id": "m", "property_id": "p", "data_type": data_type, "connector": connector}
        ),
    )


VALID = """<participant id="acme" name="Acme">
  <properties>
    <property id="hq" name="HQ" timezone="Australia/Sydney" country="AU" floorArea="100">
      <officeHours days="Mon Tue" start="08:00" end="18:00"/>
      <meter id="m1" dataType="energy" ratedKw="50">
        <csv path="exports/m1/" kind="interval" unit="kWh" timestampFormat="iso"/>
        <job type="mrv" start="2026-04-01" interval="1d" guardian="acme-guardian"/>
      </meter>
      <meter id="m2" dataType="temperature"><push/></meter>
    </property>
  </properties>
</participant>"""
ATTRIBUTES = [
    "timezone",
    "country",
    "floorArea",
    "days",
    "start",
    "end",
    "dataType",
    "ratedKw",
    "path",
    "kind",
    "unit",
    "timestampFormat",
    "interval",
    "guardian",
    "id",
    "name",
]
xml_noise = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "%Q", "-1", "1e309", "NaN", "24:00", "\x00", "&amp;", "<", '"']),
    st.integers(-(10**20), 10**20).map(str),
)


@st.composite
def mutated_xml(draw) -> bytes:
    text = VALID
    for _ in range(draw(st.integers(1, 4))):
        attribute = draw(st.sampled_from(ATTRIBUTES))
        marker = f'{attribute}="'
        if marker in text:
            head, _, tail = text.partition(marker)
            _, _, rest = tail.partition('"')
            value = draw(xml_noise).replace('"', "&quot;").replace("<", "&lt;")
            text = f'{head}{marker}{value}"{rest}'
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.text(max_size=20)) + text[cut:]
    return text.encode("utf-8", "surrogatepass")


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=mutated_xml())
def test_the_fast_schema_check_accepts_only_what_the_full_one_accepts(document):
    """A configuration libxml2 finds valid skips xmlschema's check: the two must agree."""
    if participant_xml._fast_valid(document) is not None:
        resource = xmlschema.XMLResource(io.BytesIO(document), defuse="always")
        assert list(participant_xml._schema().iter_errors(resource)) == []


@EXAMPLES
@given(document=st.one_of(mutated_xml(), st.binary(max_size=300)))
def test_the_xml_loader_raises_only_config_errors(document):
    with contextlib.suppress(MeterflowError):
        load_participant(document, "fuzz.xml")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    settings_=csv_formats,
    files=st.lists(
        st.lists(st.tuples(csv_stamps, numbers), max_size=6).map(
            lambda rows: csv_text(["timestamp", "value"], [list(r) for r in rows])
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_csv_files_parsed_together_read_as_each_alone(settings_, files):
    """The vectorised pass over many files gives every file what it gives that file alone."""
    together = parse_csv_files(files, settings_)
    alone = parse_csv_files_one_by_one(files, settings_)
    for a, b in zip(together, alone, strict=True):
        assert type(a) is type(b)
        if isinstance(a, MeterflowError):
            assert (str(a), a.line) == (str(b), b.line)
        else:
            pd.testing.assert_frame_equal(a.frame, b.frame)


def parse_csv_files_one_by_one(files, settings_):
    return [parse_csv_files([f], settings_)[0] for f in files]
