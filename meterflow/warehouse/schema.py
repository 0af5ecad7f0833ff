"""The warehouse's tables, declared once and rendered for each SQL dialect.

Star schema: facts per meter-hour and per property-hour; dimensions for participants,
properties and meters (with valid_from/valid_to history), the local calendar per property-hour
and versioned emission factors. Times are TIMESTAMP columns holding UTC (names end in `_utc`).
"""

from __future__ import annotations

from dataclasses import dataclass

# fmt: off
TYPES = {
    "duckdb": {"text": "VARCHAR", "float": "DOUBLE", "int": "INTEGER", "bool": "BOOLEAN",
               "ts": "TIMESTAMP", "date": "DATE"},
    "postgres": {"text": "TEXT", "float": "DOUBLE PRECISION", "int": "INTEGER",
                 "bool": "BOOLEAN", "ts": "TIMESTAMP", "date": "DATE"},
    "bigquery": {"text": "STRING", "float": "FLOAT64", "int": "INT64", "bool": "BOOL",
                 "ts": "TIMESTAMP", "date": "DATE"},
}
# fmt: on


# Tables whose rows grow with meters x hours. DuckDB holds a primary key's index (ART) wholly in
# memory, about 60 bytes a row: 0.5 GiB in the flow process at 8.4 million meter-hours, 5 GiB for
# a year of 10,000 meters. There these tables declare no key; their one writer
# (`SqlWarehouse._merge`) keeps it unique.
UNINDEXED_IN_DUCKDB = frozenset({"fact_meter_hourly", "fact_hourly", "dim_calendar"})


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str, bool], ...]  # (name, type, nullable)
    key: tuple[str, ...]

    def declares_key(self, dialect: str) -> bool:
        """Whether the table's key is declared (and enforced, but in BigQuery) in the dialect."""
        return not (dialect == "duckdb" and self.name in UNINDEXED_IN_DUCKDB)

    @property
    def column_names(self) -> list[str]:
        return [c[0] for c in self.columns]

    def ddl(self, dialect: str, qualified: str | None = None) -> str:
        types = TYPES[dialect]
        columns = [
            f"{name} {types[kind]}{'' if nullable else ' NOT NULL'}"
            for name, kind, nullable in self.columns
        ]
        if dialect == "bigquery":
            columns.append(f"PRIMARY KEY ({', '.join(self.key)}) NOT ENFORCED")
        elif self.declares_key(dialect):
            columns.append(f"PRIMARY KEY ({', '.join(self.key)})")
        body = ",\n    ".join(columns)
        return f"CREATE TABLE IF NOT EXISTS {qualified or self.name} (\n    {body}\n)"


def _table(name: str, key: tuple[str, ...], *columns: str) -> Table:
    """Columns as 'name type' with a trailing '?' for nullable."""
    parsed = []
    for column in columns:
        column_name, kind = column.split()
        parsed.append((column_name, kind.rstrip("?"), kind.endswith("?")))
    return Table(name, tuple(parsed), key)


# fmt: off
TABLES = {
    t.name: t
    for t in (
        _table("dim_participant", ("participant_id",), "participant_id text", "name text"),
        _table(
            "dim_property",
            ("participant_id", "property_id", "valid_from"),
            "participant_id text", "property_id text", "valid_from ts", "valid_to ts?",
            "name text", "timezone text", "country text", "region text?", "floor_area_m2 float",
            "office_days text?", "office_start text?", "office_end text?",
            "degree_day_base_c float",
        ),
        _table(
            "dim_meter",
            ("participant_id", "meter_id", "valid_from"),
            "participant_id text", "meter_id text", "valid_from ts", "valid_to ts?",
            "property_id text", "name text?", "data_type text", "unit text",
            "connector_type text", "device_id text?", "role text", "config_fingerprint text",
        ),
        _table(
            "dim_calendar",
            ("participant_id", "property_id", "hour_utc"),
            "participant_id text", "property_id text", "hour_utc ts", "local_date date",
            "local_hour int", "weekday int", "is_weekend bool", "is_holiday bool",
            "holiday_name text?", "is_office_hours bool", "is_closed bool?",
            "closure_reason text?",
        ),
        _table(
            "dim_emission_factor",
            ("country", "region", "valid_from", "edition"),
            "country text", "region text", "valid_from date", "valid_to date?", "edition text",
            "scope2_kg_per_kwh float", "scope3_kg_per_kwh float?", "source text",
            "method text?", "publication text?", "licence text?",
        ),
        # Supply contracts: per property and contract (its `from`), seq 0 is the contract (the
        # supplier's rate of the rest, if disclosed) and 1.. its instruments.
        _table(
            "dim_supply",
            ("participant_id", "property_id", "valid_from", "seq"),
            "participant_id text", "property_id text", "valid_from date", "seq int",
            "valid_to date?", "contract_name text?", "instrument text", "share float?",
            "mwh float?", "per text?", "kg_per_kwh float?", "scheme text?",
        ),
        _table(
            "fact_meter_hourly",
            ("participant_id", "meter_id", "hour_utc"),
            "participant_id text", "meter_id text", "data_type text", "hour_utc ts",
            "value float?", "unit text", "quality text", "coverage float",
        ),
        _table(
            "fact_hourly",
            ("participant_id", "property_id", "data_type", "hour_utc"),
            "participant_id text", "property_id text", "data_type text", "hour_utc ts",
            "value float?", "unit text", "quality text", "coverage float",
            "meters_reporting int", "meters_expected int",
        ),
        # Which collection runs of a participant's storage the warehouse holds the hours of.
        _table(
            "load_log",
            ("participant_id", "run_id"),
            "participant_id text", "run_id text", "loaded_utc ts",
        ),
        # Meter jobs (etl, mrv) and a task per job interval: its stage, status, retries, errors.
        _table(
            "meter_job",
            ("participant_id", "job_id"),
            "participant_id text", "job_id text", "meter_id text", "device_id text?",
            "type text", "start_date date?", "end_date date?", "frequency text",
            "implicit bool", "settings text", "last_task_id text?",
        ),
        _table(
            "meter_task",
            ("participant_id", "task_id"),
            "task_id text", "participant_id text", "job_id text", "meter_id text", "type text",
            "interval_start_utc ts", "interval_end_utc ts", "stage text", "status text",
            "retry_count int", "errors text?", "started_utc ts", "ended_utc ts",
            "hours_produced int?", "coverage float?", "record_id text?",
        ),
        # Each meter's health as of the latest dispatch, and the alerts it raised.
        _table(
            "meter_health",
            ("participant_id", "meter_id"),
            "participant_id text", "meter_id text", "property_id text", "state text",
            "since_utc ts?", "last_data_utc ts?", "failed_runs int", "last_error text?",
            "first_seen_utc ts", "evaluated_utc ts",
        ),
        _table(
            "alert_incident",
            ("incident_id",),
            "incident_id text", "participant_id text", "kind text", "subject text",
            "property_id text?", "since_utc ts", "opened_utc ts", "resolved_utc ts?",
            "last_error text?", "notify text?", "opened_sent_utc ts?", "resolved_sent_utc ts?",
        ),
        _table(
            "mrv_record",
            ("record_id", "revision"),
            "record_id text", "revision int", "participant_id text", "job_id text",
            "meter_id text", "device_id text", "period_start_utc ts", "period_end_utc ts",
            "schema_version int", "energy_kwh float", "carbon_t float?",
            "factor_kg_per_kwh float?", "factor_edition text?", "market_carbon_t float?",
            "market_basis text?", "hours_expected int",
            "hours_complete int", "hours_estimated int", "coverage float", "status text",
            "reasons text?", "document_id text?", "confirmation text?", "updated_utc ts",
        ),
        _table(
            "mrv_transition",
            ("record_id", "revision", "seq"),
            "record_id text", "revision int", "seq int", "from_status text?", "to_status text",
            "at_utc ts", "reason text",
        ),
        # The portal's API tokens: a participant each, read-only; only the secret's hash.
        _table(
            "api_token",
            ("token_id",),
            "token_id text", "participant_id text", "label text", "secret_sha256 text",
            "created_utc ts", "revoked_utc ts?",
        ),
        # Documents each read-back listed: evidence that it shows the policy's documents.
        _table(
            "mrv_confirmation",
            ("participant_id", "guardian_url", "policy_id", "readback_block", "document_id"),
            "participant_id text", "guardian_url text", "policy_id text", "readback_block text",
            "document_id text", "record_id text", "revision int", "confirmed_utc ts",
        ),
    )
}
# fmt: on
