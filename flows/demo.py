"""`make demo`: generate the example participants' files, dispatch them, show the warehouse."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from flows.dispatch import dispatch
from meterflow import demo_data, warehouse


def run_demo(data_root: str = "data") -> int:
    console = Console(width=max(Console().width, 120))
    started = time.perf_counter()
    warehouse_path = str(Path(data_root) / "warehouse.duckdb")
    window = demo_data.WINDOW
    console.print(f"[bold]Meterflow demo[/]: 2 participants, window {window}")
    demo_data.generate(data_root)
    console.print(f"  source files written under {data_root}/ (seeded, same bytes every run)")

    with console.status("dispatching: validate, collect, standardise, aggregate, load ..."):
        state = dispatch(
            start=window.start.isoformat(),
            end=window.end.isoformat(),
            data_root=data_root,
            warehouse_path=warehouse_path,
            return_state=True,
        )
    rows = state.result(raise_on_failure=False)
    if not state.is_completed():
        console.print(f"[red]dispatch failed:[/] {rows}")
        return 1

    meters = Table(title="Dispatch: meters")
    for column in (
        "participant",
        "meter",
        "files new",
        "hours new",
        "hours cached",
        "hours missing",
        "status",
    ):
        meters.add_column(column, justify="left" if column in ("participant", "meter") else "right")
    for r in rows:
        status = r["status"] if r["status"] == "ok" else f"[yellow]{r['status']}[/]"
        meters.add_row(
            r["participant"],
            r["meter"],
            str(r["files_new"]),
            str(r["hours_new"]),
            str(r["hours_cached"]),
            str(r["hours_missing"]),
            status,
        )
    console.print(meters)

    with warehouse.connect(warehouse_path) as con:
        summary = warehouse.property_summary(con, window)
        counts = con.execute(
            "SELECT (SELECT count(*) FROM fact_meter_hourly), (SELECT count(*) FROM fact_hourly)"
        ).fetchone()
    properties = Table(title=f"Warehouse: properties, {window}")
    for column in summary.columns:
        properties.add_column(
            column, justify="right" if pd.api.types.is_numeric_dtype(summary[column]) else "left"
        )
    for values in summary.itertuples(index=False):
        properties.add_row(*["" if v != v else str(v) for v in values])
    console.print(properties)

    changed = sum(r["hours_new"] for r in rows)
    console.print(
        f"{changed} meter-hours new or changed in this run "
        f"({'a rerun changes nothing' if changed == 0 else 'run again: nothing will change'}); "
        f"warehouse holds {counts[0]} meter-hours and {counts[1]} property-hours."
    )
    console.print(f"Done in {time.perf_counter() - started:.1f} s.\n")
    console.print("Query the warehouse:")
    console.print(
        f"  .venv/bin/python -c \"import duckdb; print(duckdb.connect('{warehouse_path}', "
        "read_only=True).sql('SELECT * FROM fact_hourly LIMIT 5'))\""
    )
    console.print("See the runs in the Prefect UI:")
    console.print("  make ui   # then open http://127.0.0.1:4200")
    return 0
