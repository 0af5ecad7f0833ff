"""Scale: 100 -> 1,000 -> 10,000 CSV meters x 1 day of 5-minute data through the dispatch flow,
each size in its own process: meter-hours/s and that process's peak RSS.

    .venv/bin/python -m bench.scale --sizes 100 1000 10000

Targets: meter-hours/s at the largest size within 20 % of the smallest; peak memory <= 1 GiB,
shown as the flow process's peak RSS and as the sampled peak PSS of the flow process and its shard
worker processes together. The Prefect API server runs in its own process (not counted) as it
would in production.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.fleet import (
    PER_PARTICIPANT,
    FlowMemory,
    make_fleet_apart,
    peak_rss_mib,
    print_table,
    quiet_prefect,
    timed,
)
from meterflow.collection.shards import DEFAULT_SHARD_SIZE


def one(meters: int, days: int, shard_size: int, per_participant: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="mf-scale-"))
    quiet_prefect(work / "prefect")
    from prefect.testing.utilities import prefect_test_harness

    from flows.dispatch import dispatch

    try:
        window = make_fleet_apart(work / "data", meters, days, per_participant)
        with prefect_test_harness(server_startup_timeout=90), FlowMemory() as memory:
            seconds = timed(
                lambda: dispatch(
                    start=window.start.isoformat(),
                    end=window.end.isoformat(),
                    data_root=str(work / "data"),
                    warehouse=str(work / "warehouse.duckdb"),
                    shard_size=shard_size,
                    report_every_hours=None,
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    hours = meters * len(window.hours())
    return {
        "meters": meters,
        "meter_hours": hours,
        "seconds": seconds,
        "rss": peak_rss_mib(),
        "flow_rss": memory.peak_mib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE)
    parser.add_argument("--per-participant", type=int, default=PER_PARTICIPANT)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.days, args.shard_size, args.per_participant)))
        return
    results = []
    for size in args.sizes:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.scale",
                "--one",
                str(size),
                "--days",
                str(args.days),
                "--shard-size",
                str(args.shard_size),
                "--per-participant",
                str(args.per_participant),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = results[0]["meter_hours"] / results[0]["seconds"]
    print_table(
        f"scale: meters x {args.days} day(s) through dispatch ({args.per_participant} meters a "
        f"participant, shards of {args.shard_size})",
        [
            "meters",
            "meter-hours",
            "seconds",
            "meter-hours/s",
            "vs smallest",
            "peak RSS MiB (flow process)",
            "peak PSS MiB (flow + shard workers)",
        ],
        [
            [
                r["meters"],
                r["meter_hours"],
                f"{r['seconds']:.1f}",
                f"{r['meter_hours'] / r['seconds']:,.0f}",
                f"{r['meter_hours'] / r['seconds'] / base:.2f}",
                f"{r['rss']:.0f}",
                f"{r['flow_rss']:.0f}",
            ]
            for r in results
        ],
    )


if __name__ == "__main__":
    main()
