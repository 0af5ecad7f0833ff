"""Backfill throughput, four ways side by side on the same CSV fleet: (p) the plain one-pass
DuckDB job a data engineer would write (the peer), (a) Meterflow's domain code bare, (b)
Meterflow's flows (dispatch: shards as task runs), (c) the naive Prefect design of one task run
per meter-hour; and (f) Prefect's floor, the dispatch's flow, pool and task runs with no work.

    .venv/bin/python -m bench.backfill --meters 1000 --days 7 --naive-meters 4 --naive-days 1

(c) runs on a small fleet and is compared per meter-hour. Prints seconds, meter-hours/s and what
each run does, then a/p, b/a and b/c (seconds per meter-hour), and (b - f)/a: the flows' cost over
the bare code beyond Prefect's fixed floor. Targets: a/p <= 5, b/a <= 1.15, b/c <= 0.05.
Reports are off in (b): a dispatch renders them at most daily, and (a) and (p) render none.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from bench.fleet import make_fleet, print_table, quiet_prefect, run_bare, run_peer, timed
from meterflow.collection.shards import DEFAULT_SHARD_SIZE
from meterflow.configuration.participants import list_participants

DOES = {
    "p": "CSV -> UTC hour sums -> Parquet by participant/day + table",
    "a": "+ raw archive, ledger, quality/coverage, plausibility, local days, calendar, MERGE, "
    "ETL tasks and health",
    "b": "a, as Prefect task runs (plan, shards, merge, load) with state and logs",
    "c": "a, one Prefect task run per meter-hour",
    "f": "b's flow run, worker pool and task runs, no work",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--naive-meters", type=int, default=4)
    parser.add_argument("--naive-days", type=int, default=1)
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mf-bench-"))
    quiet_prefect(work / "prefect")
    from prefect.testing.utilities import prefect_test_harness  # after PREFECT_HOME is set

    from bench.floor import empty_dispatch
    from bench.naive import naive_dispatch
    from flows.dispatch import dispatch

    window = make_fleet(work / "a", args.meters, args.days)
    shutil.copytree(work / "a", work / "b")
    small = make_fleet(work / "c", args.naive_meters, args.naive_days)
    rows = []
    try:
        seconds_p = timed(lambda: run_peer(work / "a", work / "p", work / "p.duckdb"))
        seconds_a = timed(lambda: run_bare(work / "a", work / "a.duckdb", window))
        with prefect_test_harness(server_startup_timeout=90):
            seconds_b = timed(
                lambda: dispatch(
                    start=window.start.isoformat(),
                    end=window.end.isoformat(),
                    data_root=str(work / "b"),
                    warehouse=str(work / "b.duckdb"),
                    shard_size=args.shard_size,
                    report_every_hours=None,
                )
            )
            seconds_c = timed(
                lambda: naive_dispatch(str(work / "c"), str(work / "c.duckdb"), small)
            )
            ids = list_participants(work / "b")
            seconds_f = timed(lambda: empty_dispatch(ids))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    hours = args.meters * len(window.hours())
    small_hours = args.naive_meters * len(small.hours())
    for name, meters, days, mh, seconds in (
        ("p peer: one DuckDB statement", args.meters, args.days, hours, seconds_p),
        ("a bare domain code", args.meters, args.days, hours, seconds_a),
        (f"b flows (shards of {args.shard_size})", args.meters, args.days, hours, seconds_b),
        (
            "c naive: task per meter-hour",
            args.naive_meters,
            args.naive_days,
            small_hours,
            seconds_c,
        ),
        ("f Prefect floor", 0, 0, 0, seconds_f),
    ):
        does = DOES[name[0]]
        rate = f"{mh / seconds:,.0f}" if mh else "-"
        rows.append([name, meters, days, mh, f"{seconds:.1f}", rate, does])
    print_table(
        "backfill: collect, standardise, aggregate, load DuckDB",
        ["run", "meters", "days", "meter-hours", "seconds", "meter-hours/s", "does"],
        rows,
    )
    per_hour = {
        k: s / h
        for k, s, h in (
            ("p", seconds_p, hours),
            ("a", seconds_a, hours),
            ("b", seconds_b, hours),
            ("c", seconds_c, small_hours),
        )
    }
    print(f"\na/p = {per_hour['a'] / per_hour['p']:.2f}  (target <= 5; p does far less)")
    print(f"b/a = {per_hour['b'] / per_hour['a']:.3f}  (target <= 1.15)")
    print(f"(b - f)/a = {(seconds_b - seconds_f) / seconds_a:.3f}  (beyond Prefect's fixed floor)")
    print(f"b/c = {per_hour['b'] / per_hour['c']:.4f}  (target <= 0.05, per meter-hour)")


if __name__ == "__main__":
    main()
