"""`make demo`: generate the example participants' files, dispatch them, show the warehouse.

The API meters (Wattwatchers, Solcast, weather, Electricity Maps) are served by local emulators
on 127.0.0.1, and the demo saves the blocks that point the example participants' meters at them.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from rich.table import Table

from blocks import (
    ElectricityMapsCredentials,
    GuardianPolicy,
    OpenMeteoSource,
    SolcastCredentials,
    WattwatchersCredentials,
)
from connectors import health_thresholds
from emulators.electricitymaps import ElectricityMapsEmulator
from emulators.guardian import GuardianEmulator
from emulators.openmeteo import OpenMeteoEmulator
from emulators.solcast import SolcastEmulator
from emulators.wattwatchers import WattwatchersEmulator
from flows.dispatch import dispatch
from flows.status import health_table, jobs_table
from flows.summary import show_dispatch, wide_console
from meterflow.common import demo_data
from meterflow.common.storage import LocalStorage
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.participants import read_configuration
from meterflow.jobs import alerts, health
from meterflow.jobs.store import job_overview
from meterflow.portal import tokens
from meterflow.reporting.schedule import LATEST_KEY
from meterflow.warehouse import DuckDBWarehouse
from meterflow.warehouse.queries import property_summary

# Keys the emulators accept; they only open local emulators, never a real account.
DEMO_KEYS = {
    "wattwatchers": "key_" + "d3m0" * 8,
    "solcast": "demo-solcast-" + "5ec2e7" * 4,
    "electricitymaps": "demo-emaps-" + "c4b0" * 4,
    "guardian": "demo-guardian-" + "9a55" * 4,
    # the demo device's Ed25519 key (base64 of 32 bytes), for signing MRV documents
    "device": base64.b64encode(hashlib.sha256(b"meterflow demo device").digest()).decode(),
}
WW_DEVICE, SOLCAST_SITE = "D100000000042", "ba75-e17a-7374-95ed"
POLICY_TAG, POLICY_ID = "Tag_1758892814008", "6650f1c2a1b2c3d4e5f60718"


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
        "electricitymaps": ElectricityMapsEmulator(
            api_keys={DEMO_KEYS["electricitymaps"]}, seed=demo_data.SEED, now=window.end
        ),
        "guardian": GuardianEmulator(
            users={"meterflow": DEMO_KEYS["guardian"]}, policies={POLICY_TAG: POLICY_ID}
        ),
    }
    # The grid-intensity source lacks six hours: carbon there falls back to the annual factor.
    gap = window.start + timedelta(days=3)
    emulators["electricitymaps"].hide(gap, gap + timedelta(hours=6))
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
        ElectricityMapsCredentials(
            api_key=DEMO_KEYS["electricitymaps"], base_url=emulators["electricitymaps"].url
        ).save("acme-electricitymaps", overwrite=True)
        for participant in ("acme", "globex"):
            demo_policy(emulators["guardian"].url, participant).save(
                f"{participant}-guardian", overwrite=True
            )
        yield emulators


def demo_policy(url: str, participant: str) -> GuardianPolicy:
    return GuardianPolicy(
        base_url=url,
        username="meterflow",
        password=DEMO_KEYS["guardian"],
        owner_did=f"did:hedera:testnet:{participant}-installer_0.0.1001",
        policy_id=POLICY_ID,
        policy_tag=POLICY_TAG,
        account_id="0.0.4512345",
        device_did=f"did:hedera:testnet:{participant}-devices_0.0.2002",
        device_key=DEMO_KEYS["device"],
        schema_context="https://ipfs.io/ipfs/bafkreimrvdemoschema",
        schema_type="meterflow-mrv-demo",
        readback_block="mrv_source",
    )


def run_demo(data_root: str = "data") -> int:
    console = wide_console()
    started = time.perf_counter()
    warehouse_path = str(Path(data_root) / "warehouse.duckdb")
    window = demo_data.WINDOW
    console.print(f"[bold]Meterflow demo[/]: 2 participants, window {window}")
    demo_data.generate(data_root)
    console.print(f"  source files written under {data_root}/ (seeded, same bytes every run)")

    with demo_sources(window) as emulators:
        urls = ", ".join(f"{name} {e.url}" for name, e in emulators.items())
        console.print(f"  API sources emulated on loopback ({urls}); blocks saved")
        with console.status("dispatching: validate, collect, standardise, aggregate, load, MRV"):
            state = dispatch(
                start=window.start.isoformat(),
                end=window.end.isoformat(),
                data_root=data_root,
                warehouse=warehouse_path,
                report_every_hours=0,  # the demo shows the report of what it just loaded
                return_state=True,
            )
        guardian_documents = emulators["guardian"].received
    rows = show_dispatch(console, state)
    if not state.is_completed():
        return 1

    with DuckDBWarehouse(warehouse_path, read_only=True) as wh:
        summary = property_summary(wh, window)
        counts = wh.query(
            "SELECT (SELECT count(*) FROM fact_meter_hourly) AS meter_hours, "
            "(SELECT count(*) FROM fact_hourly) AS property_hours"
        ).iloc[0]
        mrv = wh.query(
            "SELECT r.* FROM mrv_record r WHERE r.revision = (SELECT max(q.revision) "
            "FROM mrv_record q WHERE q.record_id = r.record_id) "
            "ORDER BY participant_id, meter_id, period_start_utc"
        )
    properties = Table(title=f"Warehouse: properties, {window}")
    for column in summary.columns:
        properties.add_column(
            column, justify="right" if pd.api.types.is_numeric_dtype(summary[column]) else "left"
        )
    for values in summary.itertuples(index=False):
        properties.add_row(*["" if v != v else str(v) for v in values])
    console.print(properties)

    records = Table(title="MRV records (submitted to the local Guardian emulator)")
    for column in ("participant", "meter", "interval start (UTC)", "kWh", "t CO2-e", "status"):
        records.add_column(column, justify="right" if column in ("kWh", "t CO2-e") else "left")
    for r in mrv.itertuples(index=False):
        status = r.status if r.status == "submitted" else f"[yellow]{r.status}[/]: {r.reasons}"
        records.add_row(
            r.participant_id,
            r.meter_id,
            f"{r.period_start_utc:%Y-%m-%d %H:%M}",
            f"{r.energy_kwh:,.1f}",
            f"{r.carbon_t:.3f}",
            status,
        )
    console.print(records)
    console.print(
        f"Guardian emulator received {len(guardian_documents)} documents in this run "
        "(a rerun sends none)."
    )
    show_jobs_and_health(console, warehouse_path, data_root, window)

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
    reports = sorted(Path(data_root).glob(f"*/{LATEST_KEY}"))
    console.print("Benchmarking reports, each in its participant's storage (open in a browser):")
    for report in reports:
        console.print(f"  {report}")
    console.print("The participants' portal and API: make serve  (or .venv/bin/meterflow serve)")
    console.print("  then open http://127.0.0.1:8000/login and sign in with a participant's token:")
    for participant_id, token in demo_tokens(warehouse_path, ("acme", "globex")).items():
        console.print(f"  {participant_id:8} {token}")
    console.print("See the runs in the Prefect UI:")
    console.print("  make ui   # then open http://127.0.0.1:4200")
    return 0


def show_jobs_and_health(console, warehouse: str, data_root: str, window: HourWindow) -> None:
    """The meter jobs and their latest tasks, every meter's health, and the alerts hourly
    dispatches over the window would have sent (the demo dispatches it in one run)."""
    with DuckDBWarehouse(warehouse, read_only=True) as wh:
        jobs = job_overview(wh)
        meters = health.current(wh)
        replays = []
        for participant_id in meters["participant_id"].unique():
            participant = read_configuration(LocalStorage(data_root, participant_id))
            hours = health.reading_hours(wh, participant_id, window.start, window.end)
            found = health.silences(hours, health_thresholds(participant), window.start, window.end)
            places = {m.id: m.property_id for m in participant.meters}
            replays += alerts.replayed(participant_id, places, found)
    console.print(jobs_table(jobs, "Meter jobs: ETL (collect, standardise, load) and MRV"))
    console.print(health_table(meters, f"Meter health as of {window.end:%Y-%m-%d %H:%M} UTC"))
    console.print(
        "Alerts hourly dispatches would have sent over the window (through the participant's "
        "<alerts notify=...> block, or dispatch --notify):"
    )
    for incident in replays:
        opened = {**incident, "resolved_utc": None}
        console.print(f"  {incident['opened_utc']:%Y-%m-%d %H:%M} UTC  {alerts.message(opened)[1]}")
        if incident["resolved_utc"] is not None:
            at, (_, body) = incident["resolved_utc"], alerts.message(incident)
            console.print(f"  {at:%Y-%m-%d %H:%M} UTC  {body}")
    if not replays:
        console.print("  none")


def demo_tokens(warehouse: str, participant_ids: tuple[str, ...]) -> dict[str, str]:
    """A fresh API token per example participant; the previous demo run's are revoked."""
    now = datetime.now(UTC)
    with DuckDBWarehouse(warehouse) as wh:
        held = tokens.list_tokens(wh)
        for token_id in held[(held.label == "demo") & held.revoked_utc.isna()].token_id:
            tokens.revoke_token(wh, token_id, now)
        return {p: tokens.issue_token(wh, p, "demo", now).token for p in participant_ids}
