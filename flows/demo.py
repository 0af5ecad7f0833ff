"""`make demo`: generate the example participants' files, dispatch them, show the warehouse.

The API meters (Wattwatchers, Solcast, weather) are served by local emulators on 127.0.0.1, and
the demo saves the blocks that point the example participants' meters at them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from blocks import OpenMeteoSource, SolcastCredentials, WattwatchersCredentials
from emulators.openmeteo import OpenMeteoEmulator
from emulators.solcast import SolcastEmulator
from emulators.wattwatchers import WattwatchersEmulator
from flows.dispatch import dispatch
from meterflow import demo_data
from meterflow.timeutil import HourWindow
from meterflow.warehouse import DuckDBWarehouse
from meterflow.warehouse.queries import property_summary

# Keys the emulators accept; they only open local emulators, never a real account.
DEMO_KEYS = {"wattwatchers": "key_" + "d3m0" * 8, "solcast": "demo-solcast-" + "5ec2e7" * 4}
WW_DEVICE, SOLCAST_SITE = "D100000000042", "ba75-e17a-7374-95ed"


@contextmanager
def demo_sources(window: HourWindow = demo_data.WINDOW) -> Iterator[dict]:
    """Start the API emulators and save the blocks the example meters name."""
    emulators = {
        "wattwatchers": WattwatchersEmulator(
            api_keys={DEMO_KEYS["wattwatchers"]: [WW_DEVICE]},
            seed=demo_data.SEED,
            first_ts=int((window.start - timedelta(days=30)).timestamp()),
        ),
        "solcast": SolcastEmulator(
            api_keys={DEMO_KEYS["solcast"]: [SOLCAST_SITE]}, seed=demo_data.SEED, now=window.end
        ),
        "weather": OpenMeteoEmulator(seed=demo_data.SEED),
    }
    with ExitStack() as stack:
        for emulator in emulators.values():
            stack.enter_context(emulator)
        WattwatchersCredentials(
            api_key=DEMO_KEYS["wattwatchers"], base_url=emulators["wattwatchers"].url
        ).save("globex-wattwatchers", overwrite=True)
        SolcastCredentials(api_key=DEMO_KEYS["solcast"], base_url=emulators["solcast"].url).save(
            "acme-solcast", overwrite=True
        )
        OpenMeteoSource(base_url=emulators["weather"].url).save("open-meteo", overwrite=True)
        yield emulators


def run_demo(data_root: str = "data") -> int:
    console = Console(width=max(Console().width, 120))
    started = time.perf_counter()
    warehouse_path = str(Path(data_root) / "warehouse.duckdb")
    window = demo_data.WINDOW
    console.print(f"[bold]Meterflow demo[/]: 2 participants, window {window}")
    demo_data.generate(data_root)
    console.print(f"  source files written under {data_root}/ (seeded, same bytes every run)")

    with demo_sources(window) as emulators:
        urls = ", ".join(f"{name} {e.url}" for name, e in emulators.items())
        console.print(f"  API sources emulated on loopback ({urls}); blocks saved")
        with console.status("dispatching: validate, collect, standardise, aggregate, load ..."):
            state = dispatch(
                start=window.start.isoformat(),
                end=window.end.isoformat(),
                data_root=data_root,
                warehouse=warehouse_path,
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

    with DuckDBWarehouse(warehouse_path, read_only=True) as wh:
        summary = property_summary(wh, window)
        counts = wh.query(
            "SELECT (SELECT count(*) FROM fact_meter_hourly) AS meter_hours, "
            "(SELECT count(*) FROM fact_hourly) AS property_hours"
        ).iloc[0]
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
        f"warehouse holds {counts.meter_hours} meter-hours and "
        f"{counts.property_hours} property-hours."
    )
    console.print(f"Done in {time.perf_counter() - started:.1f} s.\n")
    console.print("Query the warehouse:")
    console.print(
        f"  .venv/bin/python -c \"import duckdb; print(duckdb.connect('{warehouse_path}', "
        "read_only=True).sql('SELECT * FROM fact_hourly LIMIT 5'))\""
    )
    reports = sorted((Path(data_root) / "reports").glob("*.html"))
    console.print("Benchmarking reports (open in a browser):")
    for report in reports:
        console.print(f"  {report}")
    console.print("See the runs in the Prefect UI:")
    console.print("  make ui   # then open http://127.0.0.1:4200")
    return 0
