"""Participant configuration as typed, immutable models (the XML is parsed in participant_xml)."""

from __future__ import annotations

import hashlib
from datetime import date
from functools import cached_property
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from meterflow.standardisation.units import STANDARD_UNIT, DataType

AggregationMethod = Literal["sum", "mean", "max", "min"]

# Used when a participant's XML has no rule for a data type.
DEFAULT_AGGREGATION: dict[str, AggregationMethod] = {
    "energy": "sum",
    "solar": "sum",
    "solar_forecast": "sum",
    "temperature": "mean",
    "outdoor_temperature": "mean",
    "occupancy": "sum",
    "irradiance": "mean",
    "grid_intensity": "mean",
}


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OfficeHours(Frozen):
    days: tuple[str, ...]
    start: str
    end: str


class Closure(Frozen):
    """The building shut over [start, end) (local dates), with why; `region`: the closure of
    every property of that region (a participant-wide closure; None: all of them)."""

    start: date
    end: date
    reason: str
    region: str | None = None


class Instrument(Frozen):
    """A contractual instrument of a supply contract: energy it covers, at its own rate."""

    kind: Literal["green_power", "certificates", "ppa"]
    share: float | None = None  # of the property's consumption
    mwh: float | None = None  # per `per`, spread over that period's consumption pro rata
    per: Literal["month", "year", "term"] = "term"
    kg_per_kwh: float = 0.0
    scheme: str | None = None


class SupplyContract(Frozen):
    """How a property buys electricity over [start, end) (local dates; None: open-ended).

    Market-based carbon counts the instruments' energy at their rates and the rest at the
    supplier's rate, or the residual mix when the supplier discloses none."""

    start: date
    end: date | None = None
    name: str | None = None
    supplier_kg_per_kwh: float | None = None
    instruments: tuple[Instrument, ...] = ()


class CsvFormat(Frozen):
    """How to read a CSV meter export."""

    type: Literal["csv"] = "csv"
    kind: Literal["interval", "cumulative", "instantaneous"]
    unit: str
    timestamp_column: str = "timestamp"
    timestamp_format: str = "iso"
    timezone: str = "UTC"
    label: Literal["start", "end"] = "start"
    value_column: str = "value"
    delimiter: str = ","
    interval_minutes: int | None = None
    register_max: float | None = None
    max_gap_minutes: int | None = None


class CsvSettings(CsvFormat):
    """CSV exports dropped under `path` in the participant's storage."""

    path: str


class Nem12Format(Frozen):
    """Which NMI and register suffix of a NEM12 file a meter reads."""

    type: Literal["nem12"] = "nem12"
    nmi: str
    suffix: str


class Nem12Settings(Nem12Format):
    path: str


class PushSettings(Frozen):
    type: Literal["push"] = "push"


class WattwatchersSettings(Frozen):
    type: Literal["wattwatchers"] = "wattwatchers"
    device: str
    channels: tuple[str, ...]
    quantity: Literal["eReal", "eRealPositive", "eRealNegative"] = "eReal"


class SolcastSettings(Frozen):
    type: Literal["solcast"] = "solcast"
    site: str
    product: Literal["estimated_actuals", "forecasts"] = "estimated_actuals"


class S3Settings(Frozen):
    type: Literal["s3"] = "s3"
    bucket: str
    prefix: str = ""
    format: Annotated[CsvFormat | Nem12Format, Field(discriminator="type")]


# Weather data types and the Open-Meteo hourly variable each one reads.
WEATHER_VARIABLES: dict[str, str] = {
    "outdoor_temperature": "temperature_2m",
    "irradiance": "shortwave_radiation",
}


class WeatherSettings(Frozen):
    type: Literal["weather"] = "weather"
    latitude: float
    longitude: float


class ElectricityMapsSettings(Frozen):
    """Hourly carbon intensity of an Electricity Maps grid zone (data type grid_intensity).
    `direct` factors count combustion at the power plant only, as scope 2 location-based
    reporting does; `lifecycle` adds upstream emissions (fuel supply, plant construction)."""

    type: Literal["electricitymaps"] = "electricitymaps"
    zone: str
    emission_factor_type: Literal["direct", "lifecycle"] = "direct"


ConnectorSettings = Annotated[
    CsvSettings
    | Nem12Settings
    | PushSettings
    | WattwatchersSettings
    | SolcastSettings
    | S3Settings
    | WeatherSettings
    | ElectricityMapsSettings,
    Field(discriminator="type"),
]


JobInterval = Literal["1h", "1d", "1mo"]


class EtlJob(Frozen):
    """An ETL job of a meter: collect, standardise and load it per `interval` of the property's
    local time from `start` (a local date) to `end` (exclusive; None: open-ended). `implicit`:
    the job a meter has when its XML names none, open-ended from its first data."""

    type: Literal["etl"] = "etl"
    start: date | None = None  # None only for the implicit job: its start is the first data
    end: date | None = None
    interval: JobInterval = "1d"
    implicit: bool = False

    @property
    def id(self) -> str:
        return f"etl-{self.interval}" + ("" if self.start is None else f"-{self.start:%Y%m%d}")


class MrvJob(Frozen):
    """An MRV job of a meter: records per `interval` of the property's local time from `start`
    (a local date) to `end` (exclusive), submitted to the policy the `guardian` block names."""

    type: Literal["mrv"] = "mrv"
    start: date
    end: date | None = None
    interval: JobInterval
    guardian: str
    min_coverage: float = 0.9
    max_estimated: float = 0.1
    rated_kw: float | None = None
    schema_version: int = 1

    @property
    def id(self) -> str:
        return f"mrv-{self.interval}-{self.start:%Y%m%d}"


MeterJob = Annotated[EtlJob | MrvJob, Field(discriminator="type")]
IMPLICIT_ETL_JOB = EtlJob(implicit=True)

# Plausibility overrides: left out of a meter's fingerprint while unset, so that meters
# configured before they existed keep their fingerprint.
BOUNDS = ("rated_kw", "bidirectional", "min_value", "max_value")
# Settings that do not change how a meter's hours are made: never in its fingerprint.
NOT_HOW_READ = {"jobs", "latency_hours", "silent_after_hours"}


class Meter(Frozen):
    id: str
    property_id: str
    data_type: DataType
    connector: ConnectorSettings
    name: str | None = None
    credentials: str | None = None
    device_id: str | None = None
    role: Literal["main", "submeter"] = "main"
    jobs: tuple[MeterJob, ...] = ()
    # Plausibility overrides (meterflow.standardisation.plausibility): energy types take a rated
    # maximum and a bidirectional flag, the others a range in their standard unit.
    rated_kw: float | None = None
    bidirectional: bool | None = None
    min_value: float | None = None
    max_value: float | None = None
    # Meter health (meterflow.jobs.health): None takes its connector's defaults.
    latency_hours: float | None = None
    silent_after_hours: float | None = None

    @property
    def mrv_jobs(self) -> list[MrvJob]:
        return [job for job in self.jobs if job.type == "mrv"]

    @property
    def etl_jobs(self) -> list[EtlJob]:
        """Its ETL jobs as configured, or the implicit open-ended one."""
        return [job for job in self.jobs if job.type == "etl"] or [IMPLICIT_ETL_JOB]

    @property
    def exports(self) -> bool:
        """Whether the meter's energy may be negative: its XML says so, or it reads a net
        quantity (Wattwatchers `eReal` is import minus export)."""
        if self.bidirectional is not None:
            return self.bidirectional
        return getattr(self.connector, "quantity", None) == "eReal"

    @property
    def unit(self) -> str:
        """The standard unit of this meter's hourly readings."""
        return STANDARD_UNIT[self.data_type]

    @cached_property
    def fingerprint(self) -> str:
        """Hash of how the meter is read: changes exactly when its settings change (its jobs and
        health thresholds do not change how its hours are made, so they are left out)."""
        unset = {name for name in BOUNDS if getattr(self, name) is None}  # as before they were
        settings = self.model_dump_json(exclude={*NOT_HOW_READ, *unset})
        return hashlib.sha256(settings.encode()).hexdigest()[:16]


class Property(Frozen):
    id: str
    name: str
    timezone: str
    country: str
    region: str | None = None
    floor_area_m2: float
    office_hours: OfficeHours | None = None
    closures: tuple[Closure, ...] = ()
    supply: tuple[SupplyContract, ...] = ()
    degree_day_base_c: float | None = None
    meters: tuple[Meter, ...]


class Participant(Frozen):
    id: str
    name: str
    properties: tuple[Property, ...]
    aggregation: dict[str, AggregationMethod] = Field(default_factory=dict)
    mrv_enabled: bool = False
    mrv_settings: dict[str, str] = Field(default_factory=dict)
    # The notification block (`type-slug/name`) its alerts go to; None: the platform's.
    notify: str | None = None
    closures: tuple[Closure, ...] = ()  # participant-wide, or of one region

    def closures_of(self, prop: Property) -> list[Closure]:
        """The property's own closures and those of the participant that apply to it."""
        wide = [c for c in self.closures if c.region is None or c.region == prop.region]
        return [*prop.closures, *wide]

    @property
    def meters(self) -> list[Meter]:
        return [meter for prop in self.properties for meter in prop.meters]

    def meter(self, meter_id: str) -> Meter:
        for meter in self.meters:
            if meter.id == meter_id:
                return meter
        raise KeyError(f"participant {self.id} has no meter {meter_id!r}")

    def property(self, property_id: str) -> Property:
        for prop in self.properties:
            if prop.id == property_id:
                return prop
        raise KeyError(f"participant {self.id} has no property {property_id!r}")

    def aggregation_method(self, data_type: str) -> AggregationMethod:
        return self.aggregation.get(data_type, DEFAULT_AGGREGATION[data_type])
