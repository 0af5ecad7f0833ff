"""Backfill throughput, four ways side by side on the same CSV fleet: (p) the plain one-pass
DuckDB job a data engineer would write (the peer), (a) Meterflow's domain code bare, (b)
Meterflow's flows (dispatch: shards as task runs), (c) the naive Prefect design of one task run
per meter-hour; and (f) Prefect's floor, the dispatch's flow, pool and task runs with no work.

    .venv/bin/python -m bench.backfill --meters 1000 --days 7 --naive-meters 4 --naive-days 1

(p), (a) and (b) run in turn for `--rounds` rounds, each on fresh copies of the same fleet: the
same code varies by a second from run to run on this machine (a took 4.0 to 5.1 s in three runs
of one commit), more than the margins read here. The table gives each run's median seconds and
every round's; a/p and b/a are the medians of the rounds' ratios (each measured side by side,
while the machine's speed drifts between rounds), printed with every round's and with the ratio
of the medians. (c) runs once on a small fleet and is compared per meter-hour (b/c); (b - f)/a
is the flows' cost over the bare code beyond Prefect's fixed floor. Targets: a/p <= 5,
b/a <= 1.15, b/c <= 0.05.
Reports are off in (b): a dispatch renders them at most daily, and (a) and (p) render none.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
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
    parser.add_argument("--rounds", type=int, default=3, help="p, a and b each, in turn")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mf-bench-"))
    quiet_prefect(work / "prefect")
    from prefect.testing.utilities import prefect_test_harness  # after PREFECT_HOME is set

    from bench.floor import empty_dispatch
    from bench.naive import naive_dispatch
    from flows.dispatch import dispatch

    window = make_fleet(work / "fleet", args.meters, args.days)
    small = make_fleet(work / "c", args.naive_meters, args.naive_days)
    seconds: dict[str, list[float]] = {"p": [], "a": [], "b": []}
    try:
        with prefect_test_harness(server_startup_timeout=90):
            for i in range(args.rounds):  # each round on fresh copies of the same fleet
                fleet, a, b = work / "fleet", work / f"a{i}", work / f"b{i}"
                shutil.copytree(fleet, a)
                shutil.copytree(fleet, b)
                seconds["p"].append(timed(run_peer, fleet, work / f"p{i}", work / f"p{i}.duckdb"))
                seconds["a"].append(timed(run_bare, a, work / f"a{i}.duckdb", window))
                seconds["b"].append(
                    timed(
                        dispatch,
                        start=window.start.isoformat(),
                        end=window.end.isoformat(),
                        data_root=str(b),
                        warehouse=str(work / f"b{i}.duckdb"),
                        shard_size=args.shard_size,
                        report_every_hours=None,
                    )
                )
            seconds["c"] = [timed(naive_dispatch, str(work / "c"), str(work / "c.duckdb"), small)]
            seconds["f"] = [timed(empty_dispatch, list_participants(work / "fleet"))]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    hours = args.meters * len(window.hours())
    small_hours = args.naive_meters * len(small.hours())
    median = {run: statistics.median(times) for run, times in seconds.items()}
    rows = []
    for name, meters, days, mh in (
        ("p peer: one DuckDB statement", args.meters, args.days, hours),
        ("a bare domain code", args.meters, args.days, hours),
        (f"b flows (shards of {args.shard_size})", args.meters, args.days, hours),
        ("c naive: task per meter-hour", args.naive_meters, args.naive_days, small_hours),
        ("f Prefect floor", 0, 0, 0),
    ):
        run = name[0]
        rate = f"{mh / median[run]:,.0f}" if mh else "-"
        each = ", ".join(f"{t:.1f}" for t in seconds[run])
        rows.append([name, meters, days, mh, f"{median[run]:.1f}", each, rate, DOES[run]])
    print_table(
        f"backfill: collect, standardise, aggregate, load DuckDB; median of {args.rounds} rounds",
        ["run", "meters", "days", "meter-hours", "seconds", "each round", "meter-hours/s", "does"],
        rows,
    )

    def ratio(x: str, y: str, target: str) -> str:
        """The median of the rounds' ratios (each measured side by side, as the machine's speed
        drifts between rounds), every round's, and the ratio of the medians."""
        each = [s / t for s, t in zip(seconds[x], seconds[y], strict=True)]
        rounds = ", ".join(f"{r:.3f}" for r in each)
        overall = median[x] / median[y]
        return (
            f"{x}/{y} = {statistics.median(each):.3f}  ({target}; rounds: {rounds}; of the "
            f"medians: {overall:.3f})"
        )

    print(f"\n{ratio('a', 'p', 'target <= 5; p does far less')}")
    print(ratio("b", "a", "target <= 1.15"))
    beyond = (median["b"] - median["f"]) / median["a"]
    print(f"(b - f)/a = {beyond:.3f}  (beyond Prefect's fixed floor)")
    per_hour = (median["b"] / hours) / (median["c"] / small_hours)
    print(f"b/c = {per_hour:.4f}  (target <= 0.05, per meter-hour)")


if __name__ == "__main__":
    main()
