"""Read a participant's XML configuration safely, validate it against the XSD, build the models.

Hostile input is refused before it is parsed: no DTD or entity declarations (so no entity
expansion or external fetches), bounded size and nesting depth. Every problem is reported with
the file and line it is on, and all of them at once, so a user can fix a file in one pass.
"""

from __future__ import annotations

import io
import re
import zoneinfo
from datetime import date, datetime
from functools import cache, partial
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

from lxml import etree

from meterflow.common.errors import ConfigError, ConfigIssue
from meterflow.common.timeutil import parse_zone
from meterflow.configuration.config import (
    WEATHER_VARIABLES,
    Closure,
    CsvFormat,
    CsvSettings,
    ElectricityMapsSettings,
    EtlJob,
    Instrument,
    Meter,
    MeterJob,
    MrvJob,
    Nem12Format,
    Nem12Settings,
    OfficeHours,
    Participant,
    Property,
    PushSettings,
    S3Settings,
    SolcastSettings,
    SupplyContract,
    WattwatchersSettings,
    WeatherSettings,
)
from meterflow.standardisation.plausibility import ENERGY_TYPES
from meterflow.standardisation.units import ACCEPTED_QUANTITIES, quantity

if TYPE_CHECKING:
    import xmlschema

XSD_PATH = Path(__file__).resolve().parents[2] / "configs" / "participant.xsd"
MAX_BYTES = 1_000_000
MAX_DEPTH = 12

_DECLARATION = re.compile(rb"<!(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)
# Long runs of characters that look like an API key or secret, not a block name.
_KEY_SHAPED = re.compile(r"^(key_|sk_|Bearer\s)|^[A-Za-z0-9+/_=-]{32,}$")
_SAFE_PARSE = partial(
    etree.iterparse, resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
)


@cache
def _schema() -> xmlschema.XMLSchema:
    import xmlschema  # see _explained

    return xmlschema.XMLSchema(str(XSD_PATH))


def load_participant(source: str | Path | bytes, name: str | None = None) -> Participant:
    """Parse, validate and return a participant; raise ConfigError listing every problem."""
    if isinstance(source, bytes):
        data, name = source, name or "<participant.xml>"
    else:
        path = Path(source)
        name = name or str(source)
        if path.stat().st_size > MAX_BYTES:
            raise ConfigError(name, [ConfigIssue(None, f"file is larger than {MAX_BYTES} bytes")])
        data = path.read_bytes()
    root = _parse(data, name)
    return _build(root, name)


@cache
def _fast_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD_PATH)))


def _fast_valid(data: bytes) -> etree._Element | None:
    """The tree when libxml2 finds it well-formed, shallow enough and schema-valid: about 40
    times faster than xmlschema, which each dispatch pays for every participant. None
    otherwise: xmlschema then says everything that is wrong, by line (it is the reference;
    tests/test_properties.py checks that the two agree)."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return None
    if _depth(root) >= MAX_DEPTH or not _fast_schema().validate(root):
        return None
    return root


def _depth(root: etree._Element) -> int:
    return max((len(list(el.iterancestors())) for el in root.iter()), default=0)


def _parse(data: bytes, name: str) -> etree._Element:
    if len(data) > MAX_BYTES:
        raise ConfigError(name, [ConfigIssue(None, f"file is larger than {MAX_BYTES} bytes")])
    declaration = _DECLARATION.search(data)
    if declaration:
        line = data.count(b"\n", 0, declaration.start()) + 1
        raise ConfigError(name, [ConfigIssue(line, "DTD and entity declarations are not allowed")])
    valid = _fast_valid(data)
    if valid is not None:
        return valid
    return _explained(data, name)


def _explained(data: bytes, name: str) -> etree._Element:
    """A file libxml2 refused, read by xmlschema, which says every problem by line. Imported
    here, not with the module: a process that reads only valid files (a collection worker,
    mostly) never loads it, 0.13 s less at its start."""
    import xmlschema

    try:
        resource = xmlschema.XMLResource(io.BytesIO(data), defuse="always", iterparse=_SAFE_PARSE)
    except (etree.XMLSyntaxError, xmlschema.XMLResourceError) as exc:
        syntax = next(
            (
                e
                for e in (exc, exc.__cause__, exc.__context__)
                if isinstance(e, etree.XMLSyntaxError)
            ),
            None,
        )
        issue = (
            ConfigIssue(syntax.lineno, f"not well-formed XML: {syntax.msg}")
            if syntax
            else ConfigIssue(None, str(exc))
        )
        raise ConfigError(name, [issue]) from None
    root = resource.root
    if _depth(root) >= MAX_DEPTH:
        raise ConfigError(name, [ConfigIssue(None, f"nesting deeper than {MAX_DEPTH} levels")])
    issues = [
        ConfigIssue(error.sourceline, f"{error.path}: {error.reason or error.message}")
        for error in _schema().iter_errors(resource)
    ]
    if issues:
        raise ConfigError(name, issues)
    return root


def _build(root: etree._Element, name: str) -> Participant:
    """Turn a schema-valid tree into models, collecting the checks the XSD cannot express."""
    issues: list[ConfigIssue] = []

    def check(ok: bool, element: etree._Element, message: str) -> None:
        if not ok:
            issues.append(ConfigIssue(element.sourceline, message))

    properties = []
    for prop_el in root.iterfind("properties/property"):
        tz = prop_el.get("timezone")
        check(_is_iana(tz), prop_el, f"property {prop_el.get('id')}: unknown time zone {tz!r}")
        office = prop_el.find("officeHours")
        office_hours = None
        if office is not None:
            start, end = office.get("start"), office.get("end")
            check(start < end, office, f"office hours start {start} is not before end {end}")
            office_hours = OfficeHours(days=tuple(office.get("days").split()), start=start, end=end)
        meters = [_meter(el, prop_el.get("id"), check) for el in prop_el.iterfind("meter")]
        closures = [_closure(el, check) for el in prop_el.iterfind("closure")]
        supply = _supply(prop_el, check)
        properties.append(
            Property(
                id=prop_el.get("id"),
                name=prop_el.get("name"),
                timezone=tz,
                country=prop_el.get("country"),
                region=prop_el.get("region"),
                floor_area_m2=float(prop_el.get("floorArea")),
                office_hours=office_hours,
                closures=tuple(closures),
                supply=supply,
                degree_day_base_c=float(prop_el.get("degreeDayBase"))
                if prop_el.get("degreeDayBase")
                else None,
                meters=tuple(meters),
            )
        )
    wide = [_closure(el, check) for el in root.iterfind("closures/closure")]
    if issues:
        raise ConfigError(name, issues)
    mrv = root.find("mrv")
    return Participant(
        id=root.get("id"),
        name=root.get("name"),
        properties=tuple(properties),
        aggregation={r.get("dataType"): r.get("method") for r in root.iterfind("aggregation/rule")},
        mrv_enabled=mrv is not None and mrv.get("enabled") in ("true", "1"),
        mrv_settings={}
        if mrv is None
        else {s.get("name"): s.get("value") for s in mrv.iterfind("setting")},
        notify=root.find("alerts").get("notify") if root.find("alerts") is not None else None,
        closures=tuple(wide),
    )


def _closure(el: etree._Element, check) -> Closure:
    closure = Closure(
        start=date.fromisoformat(el.get("from")),
        end=date.fromisoformat(el.get("to")),
        reason=el.get("reason"),
        region=el.get("region"),
    )
    check(
        closure.end > closure.start,
        el,
        f"closure to {closure.end} is not after from {closure.start}",
    )
    return closure


INSTRUMENTS = {"greenPower": "green_power", "certificates": "certificates", "ppa": "ppa"}


def _supply(prop_el: etree._Element, check) -> tuple[SupplyContract, ...]:
    """The property's supply contracts, in date order; overlapping ones are refused."""
    contracts = []
    for el in prop_el.iterfind("supply"):
        instruments = []
        for item in el:
            if item.tag not in INSTRUMENTS:
                continue
            share, mwh = item.get("share"), item.get("mwh")
            check(
                (share is None) != (mwh is None),
                item,
                f"supply from {el.get('from')}: <{item.tag}> needs exactly one of share or mwh",
            )
            instruments.append(
                Instrument(
                    kind=INSTRUMENTS[item.tag],
                    share=float(share) if share is not None else None,
                    mwh=float(mwh) if mwh is not None else None,
                    per=item.get("per", "term"),
                    kg_per_kwh=float(item.get("kgPerKwh", 0)),
                    scheme=item.get("scheme"),
                )
            )
        rate = el.get("supplierKgPerKwh")
        contract = SupplyContract(
            start=date.fromisoformat(el.get("from")),
            end=date.fromisoformat(el.get("to")) if el.get("to") else None,
            name=el.get("name"),
            supplier_kg_per_kwh=float(rate) if rate is not None else None,
            instruments=tuple(instruments),
        )
        check(
            contract.end is None or contract.end > contract.start,
            el,
            f"supply to {contract.end} is not after from {contract.start}",
        )
        shares = sum(i.share or 0 for i in instruments)
        check(shares <= 1 + 1e-9, el, f"supply from {contract.start}: shares add up to {shares:g}")
        contracts.append((el, contract))
    contracts.sort(key=lambda c: c[1].start)
    for (_, before), (el, after) in pairwise(contracts):
        check(
            before.end is not None and before.end <= after.start,
            el,
            f"property {prop_el.get('id')}: supply from {after.start} overlaps the contract "
            f"from {before.start}",
        )
    return tuple(c for _, c in contracts)


def _meter(el: etree._Element, property_id: str, check) -> Meter:
    meter_id, data_type = el.get("id"), el.get("dataType")
    credentials = el.get("credentials")

    def require(ok: bool, element: etree._Element, message: str) -> None:
        check(ok, element, f"meter {meter_id}: {message}")

    if credentials is not None:
        require(
            not _KEY_SHAPED.search(credentials),
            el,
            "credentials must name a Prefect block, not hold a key",
        )
    connector_el, *job_els = [child for child in el if isinstance(child.tag, str)]
    kind, a = connector_el.tag, connector_el.attrib
    if kind == "csv":
        connector = CsvSettings(path=a["path"], **_csv_format(connector_el, data_type, require))
    elif kind == "nem12":
        connector = Nem12Settings(path=a["path"], **_nem12_format(connector_el, data_type, require))
    elif kind == "s3":
        (format_el,) = list(connector_el)
        read = _csv_format if format_el.tag == "csv" else _nem12_format
        format_model = CsvFormat if format_el.tag == "csv" else Nem12Format
        connector = S3Settings(
            bucket=a["bucket"],
            prefix=a.get("prefix", ""),
            format=format_model(**read(format_el, data_type, require)),
        )
    elif kind == "wattwatchers":
        channels = tuple(part.strip() for part in a["channels"].split(",") if part.strip())
        require(bool(channels), connector_el, "name at least one channel")
        require(
            data_type in ("energy", "solar"),
            connector_el,
            f"Wattwatchers measures energy, not {data_type}",
        )
        connector = WattwatchersSettings(
            device=a["device"], channels=channels, quantity=a.get("quantity", "eReal")
        )
    elif kind == "solcast":
        connector = SolcastSettings(site=a["site"], product=a.get("product", "estimated_actuals"))
        expected = "solar" if connector.product == "estimated_actuals" else "solar_forecast"
        require(
            data_type == expected,
            connector_el,
            f"Solcast {connector.product} is data type {expected}, not {data_type}",
        )
    elif kind == "weather":
        connector = WeatherSettings(latitude=float(a["latitude"]), longitude=float(a["longitude"]))
        require(
            data_type in WEATHER_VARIABLES,
            connector_el,
            f"weather gives {' or '.join(WEATHER_VARIABLES)}, not {data_type}",
        )
    elif kind == "electricitymaps":
        connector = ElectricityMapsSettings(
            zone=a["zone"], emission_factor_type=a.get("emissionFactorType", "direct")
        )
        require(
            data_type == "grid_intensity",
            connector_el,
            f"Electricity Maps gives grid_intensity (gCO2e/kWh of zone {connector.zone}), "
            f"not {data_type}",
        )
    else:
        connector = PushSettings()
    if kind in ("wattwatchers", "solcast", "s3", "electricitymaps"):
        require(credentials is not None, el, f"a {kind} meter needs credentials (a block name)")
    bounds = _bounds(el, data_type, require)
    return Meter(
        id=meter_id,
        property_id=property_id,
        data_type=data_type,
        connector=connector,
        name=el.get("name"),
        credentials=credentials,
        device_id=el.get("deviceId"),
        role=el.get("role", "main"),
        jobs=_jobs(job_els, data_type, require),
        latency_hours=float(el.get("latencyHours")) if el.get("latencyHours") else None,
        silent_after_hours=float(el.get("silentAfterHours"))
        if el.get("silentAfterHours")
        else None,
        **bounds,
    )


def _bounds(el: etree._Element, data_type: str, require) -> dict:
    """The meter's plausibility overrides; which ones apply depends on its data type."""
    a = el.attrib
    bounds = {
        "rated_kw": float(a["ratedKw"]) if "ratedKw" in a else None,
        "bidirectional": a["bidirectional"] in ("true", "1") if "bidirectional" in a else None,
        "min_value": float(a["minValue"]) if "minValue" in a else None,
        "max_value": float(a["maxValue"]) if "maxValue" in a else None,
    }
    if data_type in ENERGY_TYPES:
        wrong, hint = ("minValue", "maxValue"), "ratedKw and bidirectional bound energy meters"
    else:
        wrong, hint = ("ratedKw", "bidirectional"), "minValue and maxValue bound this one"
    for attribute in wrong:
        require(
            attribute not in a, el, f"{attribute} does not apply to a {data_type} meter ({hint})"
        )
    low, high = bounds["min_value"], bounds["max_value"]
    require(
        low is None or high is None or low < high,
        el,
        f"minValue {low} is not below maxValue {high}",
    )
    return bounds


def _jobs(elements: list[etree._Element], data_type: str, require) -> tuple[MeterJob, ...]:
    """The meter's jobs; two of one type must not cover the same day (named by line)."""
    jobs = [
        (_etl_job if el.get("type") == "etl" else _mrv_job)(el, data_type, require)
        for el in elements
    ]
    for i, (el, job) in enumerate(zip(elements, jobs, strict=True)):
        for other_el, other in zip(elements[:i], jobs[:i], strict=True):
            overlap = (
                job.type == other.type
                and (other.end is None or job.start < other.end)
                and (job.end is None or other.start < job.end)
            )
            require(
                not overlap,
                el,
                f"this {job.type} job overlaps the one on line {other_el.sourceline} "
                "(jobs of one type on a meter must not overlap)",
            )
    return tuple(jobs)


def _etl_job(el: etree._Element, data_type: str, require) -> EtlJob:
    a = el.attrib
    job = EtlJob(
        start=date.fromisoformat(a["start"]),
        end=date.fromisoformat(a["end"]) if "end" in a else None,
        interval=a["interval"],
    )
    require(job.end is None or job.end > job.start, el, "an ETL job must end after it starts")
    mrv_only = [name for name in a if name == "guardian" or name.startswith("mrv_")]
    require(not mrv_only, el, f"{', '.join(mrv_only)} only apply to an MRV job")
    return job


def _mrv_job(el: etree._Element, data_type: str, require) -> MrvJob:
    a = el.attrib
    require("guardian" in a, el, "an MRV job needs guardian (the Guardian policy block)")
    job = MrvJob(
        start=date.fromisoformat(a["start"]),
        end=date.fromisoformat(a["end"]) if "end" in a else None,
        interval=a["interval"],
        guardian=a.get("guardian", ""),
        min_coverage=float(a.get("mrv_minCoverage", 0.9)),
        max_estimated=float(a.get("mrv_maxEstimated", 0.1)),
        rated_kw=float(a["mrv_ratedKw"]) if "mrv_ratedKw" in a else None,
        schema_version=int(a.get("mrv_schemaVersion", 1)),
    )
    require(data_type in ("energy", "solar"), el, f"MRV records need energy, not {data_type}")
    require(job.end is None or job.end > job.start, el, "an MRV job must end after it starts")
    require(not _KEY_SHAPED.search(job.guardian), el, "guardian must name a Prefect block")
    return job


def _csv_format(el: etree._Element, data_type: str, require) -> dict:
    a = el.attrib
    settings = {
        "kind": a["kind"],
        "unit": a["unit"],
        "timestamp_column": a.get("timestampColumn", "timestamp"),
        "timestamp_format": a.get("timestampFormat", "iso"),
        "timezone": a.get("timezone", "UTC"),
        "label": a.get("label", "start"),
        "value_column": a.get("valueColumn", "value"),
        "delimiter": a.get("delimiter", ","),
        "interval_minutes": int(a["intervalMinutes"]) if "intervalMinutes" in a else None,
        "register_max": float(a["registerMax"]) if "registerMax" in a else None,
        "max_gap_minutes": int(a["maxGapMinutes"]) if "maxGapMinutes" in a else None,
    }
    unit, reading_kind = settings["unit"], settings["kind"]
    unit_quantity = quantity(unit)
    require(
        unit_quantity in ACCEPTED_QUANTITIES[data_type],
        el,
        f"unit {unit} ({unit_quantity}) cannot feed data type {data_type}",
    )
    require(
        (reading_kind == "instantaneous") != (unit_quantity == "energy"),
        el,
        f"kind {reading_kind} needs "
        + ("a non-energy unit" if reading_kind == "instantaneous" else "an energy unit"),
    )
    try:
        parse_zone(settings["timezone"])
    except ValueError as exc:
        require(False, el, str(exc))
    for attribute, column in (
        ("timestampColumn", "timestamp_column"),
        ("valueColumn", "value_column"),
    ):
        require(bool(settings[column].strip()), el, f"{attribute} must name a column, not be empty")
    require(
        settings["timestamp_column"] != settings["value_column"],
        el,
        "timestampColumn and valueColumn name the same column",
    )
    require(len(settings["delimiter"]) == 1, el, "delimiter must be one character")
    problem = timestamp_format_problem(settings["timestamp_format"])
    require(problem is None, el, f"timestampFormat {settings['timestamp_format']!r}: {problem}")
    return settings


def timestamp_format_problem(fmt: str) -> str | None:
    """Why a strftime format cannot read timestamps back (None if it can): every directive must
    be known and the format must carry at least the year, month and day."""
    if fmt in ("iso", "epoch"):
        return None
    moment = datetime(2026, 11, 23, 17, 45)
    try:
        back = datetime.strptime(moment.strftime(fmt), fmt)
    except ValueError as exc:
        return f"not a strftime format Meterflow can read ({exc}); use e.g. %Y-%m-%d %H:%M"
    if back.date() != moment.date():
        return "needs the year, month and day (%Y, %m, %d or their equivalents)"
    return None


def _nem12_format(el: etree._Element, data_type: str, require) -> dict:
    require(data_type in ("energy", "solar"), el, f"NEM12 carries energy, not {data_type}")
    return {"nmi": el.get("nmi"), "suffix": el.get("suffix")}


def _is_iana(name: str | None) -> bool:
    return bool(name) and name in _zones()


@cache
def _zones() -> set[str]:
    return zoneinfo.available_timezones()  # walks the zone database: once per process
