"""Rerun cost: a first dispatch of N Wattwatchers meters x D days of 5-minute data from the local
emulator, then the same window again (dispatch) and as a backfill with force_override=False.

    .venv/bin/python -m bench.rerun --meters 50 --days 7

Prints each run's seconds, the reruns' share of the first run, the source calls the emulator
received, and the rows that changed in the warehouse and files that changed in storage.
Targets: rerun <= 5 % of the first run, 0 source calls, 0 changed files; 0 changed rows for the
dispatch (the backfill records its intervals' meter tasks as reruns: those rows change).
Reports are off (a dispatch renders them at most daily), so the first run is not inflated by one.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import duckdb

from bench.fleet import START, print_table, quiet_prefect, timed
from meterflow.common.storage import CONFIG_KEY, LocalStorage
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.fleets import participant_xml, wattwatchers_meter

KEY = "key_" + "be4c" * 8
BLOCK = "bench-wattwatchers"


def device(n: int) -> str:
    return f"D{n:012d}"


def snapshot(data_root: Path, warehouse: Path) -> tuple[set, dict]:
    """Every warehouse row, and a digest of every stored file (the warehouse file itself, the
    platform's run state and reports aside: rows are compared one by one instead)."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        rows = {(t, *r) for t in tables for r in con.execute(f"SELECT * FROM {t}").fetchall()}
    files = {
        str(p.relative_to(data_root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in data_root.rglob("*")
        if p.is_file() and p != warehouse and not {".platform", "reports", "state"} & set(p.parts)
    }
    return rows, files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=50)
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mf-rerun-"))
    quiet_prefect(work / "prefect")
    from prefect.testing.utilities import prefect_test_harness

    from blocks import WattwatchersCredentials
    from emulators.wattwatchers import WattwatchersEmulator
    from flows.backfill import backfill
    from flows.dispatch import dispatch

    data_root, warehouse = work / "data", work / "data" / "warehouse.duckdb"
    window = HourWindow(START, START + timedelta(days=args.days))
    meters = [wattwatchers_meter(f"ww-{n:03d}", device(n), BLOCK) for n in range(args.meters)]
    LocalStorage(data_root, "fleet").write(CONFIG_KEY, participant_xml("fleet", meters))
    devices = [device(n) for n in range(args.meters)]
    emulator = WattwatchersEmulator(
        api_keys={KEY: devices}, first_ts=int((START - timedelta(days=1)).timestamp())
    )
    span = {"start": window.start.isoformat(), "end": window.end.isoformat()}
    places = {"data_root": str(data_root), "warehouse": str(warehouse)}
    runs = []
    try:
        with prefect_test_harness(server_startup_timeout=90), emulator:
            WattwatchersCredentials(api_key=KEY, base_url=emulator.url).save(BLOCK)
            for name, run in (
                ("first dispatch", lambda: dispatch(**span, **places, report_every_hours=None)),
                ("rerun: dispatch", lambda: dispatch(**span, **places, report_every_hours=None)),
                (
                    "rerun: backfill force_override=false",
                    lambda: backfill("fleet", **span, force_override=False, **places),
                ),
            ):
                calls = len(emulator.requests)
                rows, files = snapshot(data_root, warehouse) if runs else (set(), {})
                seconds = timed(run)
                after_rows, after_files = snapshot(data_root, warehouse)
                changed_files = sum(files.get(k) != v for k, v in after_files.items())
                runs.append(
                    [
                        name,
                        seconds,
                        len(emulator.requests) - calls,
                        len(after_rows - rows),
                        changed_files,
                    ]
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    first = runs[0][1]
    print_table(
        f"rerun: {args.meters} Wattwatchers meters x {args.days} days of 5-minute data",
        ["run", "seconds", "of first run", "source calls", "changed rows", "changed files"],
        [[n, f"{s:.2f}", f"{s / first:.1%}", c, r, f] for n, s, c, r, f in runs],
    )


if __name__ == "__main__":
    main()
