"""`meterflow` command line: validate configurations, try a meter export, run the pipeline.

Commands that run flows import Prefect only when they run, so `validate` and `standardise`
stay quick.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

from connectors import FILE_CONNECTORS
from meterflow.collect import standardise_meter
from meterflow.config import CsvSettings, Meter, Nem12Settings, PushSettings
from meterflow.errors import MeterflowError
from meterflow.participant_xml import load_participant
from meterflow.shards import DEFAULT_SHARD_SIZE
from meterflow.units import quantity

_DATA_TYPE_OF = {
    "energy": "energy",
    "power": "energy",
    "temperature": "temperature",
    "count": "occupancy",
    "irradiance": "irradiance",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meterflow", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check participant XML files")
    validate.add_argument("files", nargs="+", type=Path)

    std = commands.add_parser(
        "standardise", help="hourly readings of a meter export, as CSV on stdout"
    )
    std.add_argument("file", type=Path)
    std.add_argument("--format", choices=["csv", "nem12", "push"], default="csv")
    std.add_argument("--meter-xml", help="a <meter> element (or a file holding one)")
    std.add_argument("--kind", choices=["interval", "cumulative", "instantaneous"])
    std.add_argument("--unit", help="source unit, e.g. Wh, kWh, kW, degC, persons")
    std.add_argument("--data-type", help="energy, solar, temperature, occupancy, irradiance")
    std.add_argument("--tz", default="UTC", help="IANA zone, UTC or +HH:MM of naive timestamps")
    std.add_argument("--timestamp-column", default="timestamp")
    std.add_argument("--timestamp-format", default="iso", help="strftime, iso or epoch")
    std.add_argument("--value-column", default="value")
    std.add_argument("--label", choices=["start", "end"], default="start")
    std.add_argument("--interval-minutes", type=int)
    std.add_argument("--register-max", type=float)
    std.add_argument("--nmi")
    std.add_argument("--suffix", default="E1")

    demo = commands.add_parser("demo", help="generate example data and run dispatch end to end")
    demo.add_argument("--data-root", default="data")

    report = commands.add_parser("report", help="write the benchmarking report (HTML)")
    report.add_argument("--participant", required=True)
    report.add_argument("--from", dest="start", required=True, help="first local date")
    report.add_argument("--to", dest="end", required=True, help="local date after the last")
    report.add_argument("--warehouse", default="data/warehouse.duckdb")
    report.add_argument("--out", type=Path, help="default: reports/<participant>-<from>-<to>.html")

    back = commands.add_parser("backfill", help="re-collect and reload a span, resumably")
    back.add_argument("--participant", required=True)
    back.add_argument("--meter", action="append", dest="meters", help="repeat; default: all")
    back.add_argument("--from", dest="start", required=True, help="UTC, e.g. 2026-03-30T00:00")
    back.add_argument("--to", dest="end", required=True)
    back.add_argument(
        "--force-override",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fetch again (default) or rebuild from the raw archive only",
    )
    back.add_argument("--chunk-days", type=int, default=7)
    back.add_argument("--data-root", default="data")
    back.add_argument("--warehouse", default="data/warehouse.duckdb")
    back.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="meters per shard")

    dispatch = commands.add_parser("dispatch", help="run the dispatch flow once")
    dispatch.add_argument("--from", dest="start")
    dispatch.add_argument("--to", dest="end")
    dispatch.add_argument("--data-root", default="data")
    dispatch.add_argument("--participant", action="append", dest="participants")
    dispatch.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE)

    jobs = commands.add_parser("jobs", help="list MRV jobs, their last task and records")
    jobs.add_argument("--warehouse", default="data/warehouse.duckdb")
    jobs.add_argument("--participant")

    mrv = commands.add_parser("mrv", help="run the MRV flow for a participant")
    mrv.add_argument("--participant", required=True)
    mrv.add_argument("--until", help="intervals that ended by this time (default: now)")
    mrv.add_argument("--data-root", default="data")
    mrv.add_argument("--warehouse", default="data/warehouse.duckdb")

    doctor = commands.add_parser("doctor", help="check API, work pools, blocks, storage, warehouse")
    doctor.add_argument("--data-root", default="data")
    doctor.add_argument("--warehouse", default="data/warehouse.duckdb")
    doctor.add_argument(
        "--target", default="local", choices=["local", "gcp", "aws"], help="prefect.yaml target"
    )

    args = parser.parse_args(argv)
    try:
        return {
            "validate": _validate,
            "standardise": _standardise,
            "demo": _demo,
            "report": _report,
            "backfill": _backfill,
            "dispatch": _dispatch,
            "jobs": _jobs,
            "mrv": _mrv,
            "doctor": _doctor,
        }[args.command](args)
    except MeterflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # stdout closed early, e.g. piped into `head`
        sys.stderr.close()
        return 0


def _validate(args) -> int:
    failed = 0
    for path in args.files:
        try:
            participant = load_participant(path)
        except MeterflowError as exc:
            failed += 1
            print(exc)
        except OSError as exc:
            failed += 1
            print(f"{path}: {exc.strerror}")
        else:
            meters = len(participant.meters)
            print(
                f"{path}: OK ({participant.id}: {len(participant.properties)} properties, "
                f"{meters} meters)"
            )
    return 1 if failed else 0


def _standardise(args) -> int:
    meter = _meter_from_args(args)
    connector = FILE_CONNECTORS[meter.connector.type]
    readings = connector.parse(args.file.read_bytes(), args.file.name, meter)
    if len(readings) == 0:
        print("error: no readings for this meter in the file", file=sys.stderr)
        return 1
    hourly = standardise_meter([readings], meter)
    hourly["hour_utc"] = hourly["hour_utc"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    hourly.to_csv(sys.stdout, index=False, lineterminator="\n", float_format="%.6g")
    return 0


def _meter_from_args(args) -> Meter:
    if args.meter_xml:
        snippet = args.meter_xml
        if not snippet.lstrip().startswith("<"):
            snippet = Path(snippet).read_text()
        document = (
            '<participant id="cli" name="cli"><properties><property id="cli" name="cli" '
            f'timezone="UTC" country="AU" floorArea="1">\n{snippet}\n'
            "</property></properties></participant>"
        )
        (meter,) = load_participant(document.encode(), "--meter-xml").meters
        return meter
    if args.format == "nem12":
        if not args.nmi:
            raise SystemExit("error: --format nem12 needs --nmi (and --suffix, default E1)")
        settings = Nem12Settings(path="cli/", nmi=args.nmi, suffix=args.suffix)
    elif args.format == "push":
        settings = PushSettings()
    else:
        if not (args.kind and args.unit):
            raise SystemExit("error: a CSV export needs --kind and --unit (or --meter-xml)")
        settings = CsvSettings(
            path="cli/",
            kind=args.kind,
            unit=args.unit,
            timestamp_column=args.timestamp_column,
            timestamp_format=args.timestamp_format,
            timezone=args.tz,
            label=args.label,
            value_column=args.value_column,
            interval_minutes=args.interval_minutes,
            register_max=args.register_max,
        )
    data_type = args.data_type or (
        _DATA_TYPE_OF[quantity(settings.unit)] if isinstance(settings, CsvSettings) else "energy"
    )
    return Meter(id="cli", property_id="cli", data_type=data_type, connector=settings)


def _report(args) -> int:
    from blocks import open_warehouse
    from meterflow.report import write_report

    out = args.out or Path("reports") / f"{args.participant}-{args.start}-{args.end}.html"
    start, end = date.fromisoformat(args.start), date.fromisoformat(args.end)
    with open_warehouse(args.warehouse) as wh:
        write_report(wh, args.participant, start, end, out)
    print(f"report written to {out.resolve()}")
    return 0


def _quiet_prefect() -> None:
    """Progress comes from our own output; Prefect's per-run lines would bury it."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The temporary server cancels its event flush when it stops and logs that as an error.
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")


def _backfill(args) -> int:
    import threading

    _quiet_prefect()

    from rich.progress import Progress

    from flows.backfill import backfill, record_for
    from meterflow.backfill import chunks
    from meterflow.timeutil import HourWindow

    window = HourWindow.parse(args.start, args.end)
    record = record_for(args.data_root, args.participant, args.meters, window, args.force_override)
    total = len(chunks(window, args.chunk_days))
    finished = threading.Event()
    with Progress() as progress:
        bar = progress.add_task(f"backfill {args.participant} {window}", total=total)

        def follow() -> None:  # the record is the truth: it also counts chunks done earlier
            while not finished.wait(0.5):
                progress.update(bar, completed=len(record.done()))

        watcher = threading.Thread(target=follow, daemon=True)
        watcher.start()
        state = backfill(
            participant_id=args.participant,
            start=args.start,
            end=args.end,
            meter_ids=args.meters,
            force_override=args.force_override,
            chunk_days=args.chunk_days,
            data_root=args.data_root,
            warehouse=args.warehouse,
            shard_size=args.shard_size,
            return_state=True,
        )
        finished.set()
        watcher.join()
        progress.update(bar, completed=len(record.done()))
    if not state.is_completed():
        print(f"error: {state.message}", file=sys.stderr)
        return 1
    result = state.result()
    print(f"backfill done: {result['done_now']} chunks now, {result['done_before']} before")
    return 0


def _demo(args) -> int:
    _quiet_prefect()
    from flows.demo import run_demo

    return run_demo(args.data_root)


def _dispatch(args) -> int:
    from flows.dispatch import dispatch

    state = dispatch(
        start=args.start,
        end=args.end,
        data_root=args.data_root,
        participants=args.participants,
        shard_size=args.shard_size,
        return_state=True,
    )
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main())


def _jobs(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from blocks import open_warehouse
    from meterflow.mrv.store import job_overview

    with open_warehouse(args.warehouse) as wh:
        jobs = job_overview(wh, args.participant)
    table = Table(title=f"MRV jobs in {args.warehouse}")
    for column in (
        "participant",
        "job",
        "from",
        "to",
        "guardian block",
        "last task",
        "status",
        "retries",
        "submitted",
        "rejected",
        "other",
    ):
        table.add_column(column, no_wrap=True)
    for j in jobs.itertuples(index=False):
        table.add_row(
            j.participant_id,
            j.job_id,
            f"{j.start_date:%Y-%m-%d}",
            f"{j.end_date:%Y-%m-%d}" if j.end_date == j.end_date and j.end_date else "",
            j.guardian_block,
            j.last_task_id or "",
            j.last_task_status or "",
            *(str(v) for v in (j.last_task_retries, j.submitted, j.rejected, j.other)),
        )
    Console(width=max(Console().width, 190)).print(table)
    return 0


def _mrv(args) -> int:
    _quiet_prefect()
    from flows.mrv import mrv

    state = mrv(
        participant_id=args.participant,
        until=args.until,
        data_root=args.data_root,
        warehouse=args.warehouse,
        return_state=True,
    )
    rows = state.result(raise_on_failure=False)
    if not state.is_completed():
        print(f"error: {state.message}", file=sys.stderr)
        return 1
    for row in rows:
        print(
            f"{row['meter']} {row['period_start']} rev {row['revision']}: {row['status']} "
            f"{row['energy_kwh']} kWh {row['why']}"
        )
    print(f"{len(rows)} records extracted or submitted in this run")
    return 0


def _doctor(args) -> int:
    _quiet_prefect()
    from flows.doctor import run_checks

    checks = run_checks(args.data_root, args.warehouse, args.target)
    for check in checks:
        print(f"{'ok     ' if check.ok else 'MISSING'} {check.what}")
        if not check.ok:
            print(f"        fix: {check.fix}")
        elif check.note:
            print(f"        note: {check.note}")
    missing = sum(not c.ok for c in checks)
    print(f"{len(checks) - missing} ok, {missing} missing")
    return 1 if missing else 0
