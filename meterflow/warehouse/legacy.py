"""What an earlier Meterflow left in a warehouse, brought up to today's schema when it changes,
so that an upgrade loses no history: columns added since (nullable) are added to the tables,
DuckDB's fact tables lose the key index they were made with, and MRV jobs and tasks (`mrv_job`,
`mrv_task`) move in with every meter job's (`meter_job`, `meter_task`)."""

from __future__ import annotations

import json

import pandas as pd

from meterflow.mrv.store import STAGE_OF
from meterflow.warehouse.backend import Warehouse
from meterflow.warehouse.schema import TABLES, TYPES, UNINDEXED_IN_DUCKDB

LEGACY = ("mrv_task", "mrv_job")


def migrate(wh: Warehouse) -> None:
    """Add the columns the tables lack; drop the key index of DuckDB's fact tables; move the
    legacy MRV job and task rows into meter_job and meter_task, then drop them."""
    if wh.dialect == "bigquery":  # MRV never ran there: its legacy tables are empty
        for name in LEGACY:
            wh.execute(f"DROP TABLE IF EXISTS {wh.table(name)}")
        _add_columns(wh)
        return
    _add_columns(wh)
    _unindex(wh)
    found = wh.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
        f"AND table_name IN ({', '.join('?' for _ in LEGACY)})",
        [getattr(wh, "schema", "main"), *LEGACY],
    )
    if set(found["table_name"]) != set(LEGACY):
        return
    jobs = wh.query(f"SELECT * FROM {wh.table('mrv_job')}")
    tasks = wh.query(
        f"SELECT t.*, r.period_end_utc FROM {wh.table('mrv_task')} t LEFT JOIN "
        f"(SELECT record_id, max(period_end_utc) AS period_end_utc FROM {wh.table('mrv_record')}"
        " GROUP BY record_id) r ON r.record_id = t.record_id"
    )
    wh.upsert(
        "meter_job",
        jobs.assign(frequency=jobs["interval"], implicit=False)[TABLES["meter_job"].column_names],
    )
    moved = pd.DataFrame(
        {
            "task_id": tasks["task_id"],
            "participant_id": tasks["participant_id"],
            "job_id": tasks["job_id"],
            "meter_id": tasks["job_id"].str.split("/").str[0],
            "type": "mrv",
            "interval_start_utc": tasks["period_start_utc"],
            "interval_end_utc": tasks["period_end_utc"].fillna(tasks["period_start_utc"]),
            "stage": tasks["status"].map(STAGE_OF),
            "status": tasks["status"],
            "retry_count": tasks["retry_count"],
            "errors": tasks["errors"].map(_errors),
            "started_utc": tasks["updated_utc"],
            "ended_utc": tasks["updated_utc"],
            "hours_produced": None,
            "coverage": None,
            "record_id": tasks["record_id"],
        },
        columns=TABLES["meter_task"].column_names,
    )
    wh.upsert("meter_task", moved)
    for name in LEGACY:
        wh.execute(f"DROP TABLE {wh.table(name)}")


def _errors(old) -> str | None:
    """Legacy errors ({at, error}) in today's shape ({at, stage, type, message})."""
    if not isinstance(old, str) or not old:
        return None
    return json.dumps(
        [
            {"at": e["at"], "stage": "submission", "type": "Error", "message": e["error"]}
            for e in json.loads(old)
        ]
    )


def _unindex(wh: Warehouse) -> None:
    """DuckDB tables made with a key index they no longer have (`UNINDEXED_IN_DUCKDB`): each
    rebuilt without it in one transaction, every row kept."""
    if wh.dialect != "duckdb":
        return
    keyed = wh.query(
        "SELECT table_name FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
    )
    for name in sorted(UNINDEXED_IN_DUCKDB & set(keyed["table_name"])):
        columns = ", ".join(TABLES[name].column_names)
        with wh.transaction():
            wh.execute(TABLES[name].ddl("duckdb", f"{name}_unindexed"))
            wh.execute(f"INSERT INTO {name}_unindexed SELECT {columns} FROM {name}")
            wh.execute(f"DROP TABLE {name}")
            wh.execute(f"ALTER TABLE {name}_unindexed RENAME TO {name}")


def _add_columns(wh: Warehouse) -> None:
    """Columns a table gained since the warehouse was made (all nullable), added empty."""
    for table in TABLES.values():
        for name, kind, nullable in table.columns:
            if nullable:
                column = f"{name} {TYPES[wh.dialect][kind]}"
                wh.execute(f"ALTER TABLE {wh.table(table.name)} ADD COLUMN IF NOT EXISTS {column}")
