"""`meterflow` command line: validate configurations, try a meter export, run the pipeline.

A user error of any command is one line on stderr, `error: <file>[:<line>]: <what>`, with exit
code 1 (2 for options that do not fit); never a traceback. Commands that run flows import
Prefect only when they run, so `validate` and `standardise` stay quick; they show their own
progress, summary and failures, and Prefect's console log only with `--verbose` (the runs' logs
still reach the Prefect API and UI).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import NoReturn
from xml.sax.saxutils import quoteattr

from connectors import FILE_CONNECTORS
from connectors.nem12 import NEM_TIME
from meterflow.aggregation.emission_factors import factor_gaps
from meterflow.collection.collect import Connector, standardise_meter
from meterflow.collection.shards import DEFAULT_SHARD_SIZE
from meterflow.common.errors import ConfigError, ConfigIssue, MeterflowError, SourceDataError
from meterflow.common.timeutil import floor_hour, parse_zone
from meterflow.configuration.config import Meter
from meterflow.configuration.participant_xml import load_participant
from meterflow.reporting.schedule import REPORT_EVERY_HOURS
from meterflow.standardisation.readings import SourceReadings
from meterflow.standardisation.units import STANDARD_UNIT, quantity

WAREHOUSE_HELP = "a DuckDB file, or a warehouse block as type-slug/name (default: %(default)s)"
_DATA_TYPE_OF = {
    "energy": "energy",
    "power": "energy",
    "temperature": "temperature",
    "count": "occupancy",
    "irradiance": "irradiance",
    "carbon_intensity": "grid_intensity",
}
# `standardise` options that describe a meter, and the attribute of <csv> or <nem12> each sets.
_CSV_OPTIONS = {
    "kind": "kind",
    "unit": "unit",
    "tz": "timezone",
    "timestamp_column": "timestampColumn",
    "timestamp_format": "timestampFormat",
    "value_column": "valueColumn",
    "label": "label",
    "interval_minutes": "intervalMinutes",
    "register_max": "registerMax",
}
_NEM12_OPTIONS = {"nmi": "nmi", "suffix": "suffix"}
_FORMAT_OPTIONS = {"csv": _CSV_OPTIONS, "nem12": _NEM12_OPTIONS, "push": {}}


class UsageError(Exception):
    """Options that do not fit together (exit code 2, like argparse's own errors)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line like every other error, pointing at --help instead of printing the usage."""
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _checked(parse: Callable[[str], object]) -> Callable[[str], str]:
    """An argparse type: the value, once `parse` (the project's own vocabulary) accepts it."""

    def check(text: str) -> str:
        try:
            parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return check


def _whole_hour(text: str) -> datetime:
    """A window bound: an ISO time on a whole UTC hour (UTC if it has no offset)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a time such as 2026-03-30T00:00") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment != floor_hour(moment):
        raise ValueError(f"{text!r} is not a whole UTC hour (such as 2026-03-30T00:00)")
    return moment


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date such as 2026-03-30") from None


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="meterflow", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    # Commands that run flows or talk to the Prefect API.
    prefect_output = argparse.ArgumentParser(add_help=False)
    prefect_output.add_argument(
        "--verbose", action="store_true", help="show Prefect's log on the console too"
    )
    hour, day = _checked(_whole_hour), _checked(_day)

    validate = commands.add_parser("validate", help="check participant XML files")
    validate.add_argument("files", nargs="+", type=Path)

    std = commands.add_parser(
        "standardise", help="hourly readings of a meter export, as CSV on stdout"
    )
    std.add_argument("file", type=Path)
    std.add_argument("--format", choices=list(_FORMAT_OPTIONS), help="default: csv")
    std.add_argument("--meter-xml", help="a <meter> element (or a file holding one)")
    std.add_argument("--kind", choices=["interval", "cumulative", "instantaneous"])
    std.add_argument(
        "--unit", type=_checked(quantity), help="source unit, e.g. Wh, kWh, kW, degC, persons"
    )
    std.add_argument("--data-type", choices=list(STANDARD_UNIT), help="default: from the unit")
    std.add_argument(
        "--tz",
        type=_checked(parse_zone),
        help="IANA zone, UTC or +HH:MM of timestamps without an offset (default: UTC)",
    )
    std.add_argument("--timestamp-column", help="default: timestamp")
    std.add_argument("--timestamp-format", help="strftime, iso (default) or epoch")
    std.add_argument("--value-column", help="default: value")
    std.add_argument("--label", choices=["start", "end"], help="default: start")
    std.add_argument("--interval-minutes", type=_positive, help="default: inferred")
    std.add_argument("--register-max", type=float)
    std.add_argument("--nmi")
    std.add_argument("--suffix", help="default: E1")

    demo = commands.add_parser(
        "demo", parents=[prefect_output], help="generate example data and run dispatch end to end"
    )
    demo.add_argument("--data-root", default="data")

    report = commands.add_parser(
        "report", parents=[prefect_output], help="write the benchmarking report (HTML)"
    )
    report.add_argument("--participant", required=True)
    report.add_argument("--from", dest="start", required=True, type=day, help="first local date")
    report.add_argument(
        "--to", dest="end", required=True, type=day, help="local date after the last"
    )
    report.add_argument("--warehouse", default="data/warehouse.duckdb")
    report.add_argument("--out", type=Path, help="default: reports/<participant>-<from>-<to>.html")

    back = commands.add_parser(
        "backfill", parents=[prefect_output], help="re-collect and reload a span, resumably"
    )
    back.add_argument("--participant", required=True)
    back.add_argument("--meter", action="append", dest="meters", help="repeat; default: all")
    back.add_argument(
        "--from", dest="start", required=True, type=hour, help="UTC, e.g. 2026-03-30T00:00"
    )
    back.add_argument("--to", dest="end", required=True, type=hour)
    back.add_argument(
        "--force-override",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fetch again (default) or rebuild from the raw archive only",
    )
    back.add_argument("--chunk-days", type=_positive, default=7)
    back.add_argument("--data-root", default="data")
    back.add_argument("--warehouse", default="data/warehouse.duckdb", help=WAREHOUSE_HELP)
    back.add_argument(
        "--shard-size", type=_positive, default=DEFAULT_SHARD_SIZE, help="meters per shard"
    )

    dispatch = commands.add_parser(
        "dispatch", parents=[prefect_output], help="run the dispatch flow once"
    )
    dispatch.add_argument("--from", dest="start", type=hour, help="default: the last 24 hours")
    dispatch.add_argument("--to", dest="end", type=hour)
    dispatch.add_argument("--data-root", default="data")
    dispatch.add_argument("--warehouse", default="data/warehouse.duckdb", help=WAREHOUSE_HELP)
    dispatch.add_argument("--participant", action="append", dest="participants")
    dispatch.add_argument("--shard-size", type=_positive, default=DEFAULT_SHARD_SIZE)
    dispatch.add_argument(
        "--report-every-hours",
        type=float,
        default=REPORT_EVERY_HOURS,
        help="render a participant's latest report when it is this old (0: after every load)",
    )
    dispatch.add_argument(
        "--notify",
        help="notification block for alerts of participants whose XML names none "
        "(e.g. slack-webhook/ops; docs/jobs.md)",
    )

    jobs = commands.add_parser(
        "jobs", help="list ETL and MRV jobs, their latest task and MRV records"
    )
    jobs.add_argument("--warehouse", default="data/warehouse.duckdb")
    jobs.add_argument("--participant")
    jobs.add_argument("--type", choices=("etl", "mrv"))
    tasks = commands.add_parser("tasks", help="the task history of a meter")
    tasks.add_argument("--meter", required=True)
    tasks.add_argument("--from", dest="start", type=hour, required=True)
    tasks.add_argument("--to", dest="end", type=hour, required=True)
    tasks.add_argument("--participant")
    tasks.add_argument("--warehouse", default="data/warehouse.duckdb")
    status = commands.add_parser(
        "status", help="every meter's health (ok, late, silent, failing, ...) per participant"
    )
    status.add_argument("--participant")
    status.add_argument("--warehouse", default="data/warehouse.duckdb")
    alerts = commands.add_parser(
        "alerts",
        parents=[prefect_output],
        help="install the Prefect automations that tell operators when dispatch itself stops",
    )
    alerts.add_argument("action", choices=["install"])
    alerts.add_argument(
        "--notify", required=True, help="notification block, e.g. slack-webhook/ops"
    )
    alerts.add_argument(
        "--quiet-hours",
        type=float,
        default=2.0,
        help="tell when no dispatch run has finished for this long (default 2)",
    )

    mrv = commands.add_parser(
        "mrv", parents=[prefect_output], help="run the MRV flow for a participant"
    )
    mrv.add_argument("--participant", required=True)
    mrv.add_argument("--until", help="intervals that ended by this time (default: now)")
    mrv.add_argument("--data-root", default="data")
    mrv.add_argument("--warehouse", default="data/warehouse.duckdb")

    resolve = commands.add_parser(
        "mrv-resolve",
        help="settle an MRV record that needs a person: mark it submitted or release it",
    )
    resolve.add_argument("--record", required=True, help="record id, as `meterflow jobs` lists")
    decision = resolve.add_mutually_exclusive_group(required=True)
    decision.add_argument("--submitted", action="store_true", help="Guardian has its document")
    decision.add_argument(
        "--release", action="store_true", help="Guardian does not: the next run sends it"
    )
    resolve.add_argument("--evidence", required=True, help="what shows it, e.g. what you checked")
    resolve.add_argument("--by", help="who decides (default: this OS user)")
    resolve.add_argument("--warehouse", default="data/warehouse.duckdb")

    migrate = commands.add_parser(
        "migrate-storage",
        parents=[prefect_output],
        help="convert participants' storage from the per-meter layout (before 0.2)",
    )
    migrate.add_argument("--participant", action="append", dest="participants")
    migrate.add_argument("--data-root", default="data")

    serve = commands.add_parser(
        "serve", help="the participants' portal and API (settings: METERFLOW_PORTAL_*)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_positive, default=8000)
    serve.add_argument("--warehouse", help="default: METERFLOW_PORTAL_WAREHOUSE or the demo's")
    serve.add_argument("--data-root", help="default: METERFLOW_PORTAL_DATA_ROOT or data")

    token = commands.add_parser("token", help="create, list or revoke participants' API tokens")
    token.add_argument("action", choices=["create", "list", "revoke"])
    token.add_argument("--participant", help="create: whose data the token reads")
    token.add_argument("--label", default="", help="create: who or what holds it")
    token.add_argument("--id", dest="token_id", help="revoke: the token's id")
    token.add_argument("--warehouse", default="data/warehouse.duckdb")

    doctor = commands.add_parser(
        "doctor",
        parents=[prefect_output],
        help="check API, work pools, blocks, storage, warehouse",
    )
    doctor.add_argument("--data-root", default="data")
    doctor.add_argument("--warehouse", default="data/warehouse.duckdb")
    doctor.add_argument(
        "--target", default="local", choices=["local", "gcp", "aws"], help="prefect.yaml target"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _quiet_prefect(getattr(args, "verbose", False))
    try:
        return {
            "validate": _validate,
            "standardise": _standardise,
            "demo": _demo,
            "report": _report,
            "backfill": _backfill,
            "dispatch": _dispatch,
            "jobs": _jobs,
            "tasks": _tasks,
            "status": _status,
            "alerts": _alerts,
            "mrv": _mrv,
            "mrv-resolve": _mrv_resolve,
            "doctor": _doctor,
            "migrate-storage": _migrate,
            "serve": _serve,
            "token": _token,
        }[args.command](args)
    except UsageError as exc:
        _error(f"{exc} (see meterflow {args.command} --help)")
        return 2
    except MeterflowError as exc:
        for line in str(exc).splitlines():
            _error(line)
        return 1
    except BrokenPipeError:  # stdout closed early, e.g. piped into `head`
        sys.stderr.close()
        return 0
    except OSError as exc:  # a file or folder the user named: missing, a folder, unreadable
        _error(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
        return 1
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


def _error(line: str) -> None:
    sys.stdout.flush()  # stdout and stderr often share a terminal: keep them in order
    print(f"error: {line}", file=sys.stderr)


def _note(line: str) -> None:
    sys.stdout.flush()
    print(f"note: {line}", file=sys.stderr)


def _validate(args) -> int:
    failed = 0
    for path in args.files:
        try:
            participant = load_participant(path)
        except MeterflowError as exc:
            failed += 1
            for line in str(exc).splitlines():
                _error(line)
        except OSError as exc:
            failed += 1
            _error(f"{path}: {exc.strerror}")
        else:
            meters = len(participant.meters)
            print(
                f"{path}: OK ({participant.id}: {len(participant.properties)} properties, "
                f"{meters} meters)"
            )
            for warning in factor_gaps(participant, datetime.now(UTC).date()):
                _note(f"{path}: {warning}")
    return 1 if failed else 0


def _standardise(args) -> int:
    for note in _unused_options(args):
        _note(note)
    meter = _meter(args)
    connector = FILE_CONNECTORS.get(meter.connector.type)
    if connector is None:
        raise UsageError(
            f"a {meter.connector.type} meter is read from its source, not from a file; "
            f"standardise reads {', '.join(FILE_CONNECTORS)} files"
        )
    data = args.file.read_bytes()
    readings = _parse(connector, data, args.file, meter)
    if len(readings) == 0:
        raise SourceDataError("no readings for this meter in the file", file=str(args.file))
    if args.tz and not _zone_unused(args) and not _zone_matters(connector, data, args.file, meter):
        _note(f"--tz has no effect: every timestamp in {args.file} carries its own offset")
    hourly = standardise_meter([readings], meter)
    hourly["hour_utc"] = hourly["hour_utc"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    hourly.to_csv(sys.stdout, index=False, lineterminator="\n", float_format=_shortest)
    return 0


def _shortest(value: float) -> str:
    """The shortest text that reads back as the same float (1234567.891, 0.1, 1)."""
    return repr(float(value)).removesuffix(".0")


def _parse(connector: Connector, data: bytes, path: Path, meter: Meter) -> SourceReadings:
    try:
        return connector.parse(data, path.name, meter)
    except SourceDataError as exc:  # the parser knows the line, not the file
        raise SourceDataError(exc.reason, file=str(path), line=exc.line) from None


def _zone_matters(connector: Connector, data: bytes, path: Path, meter: Meter) -> bool:
    """Whether the zone moves any reading: not if every timestamp carries its own offset."""
    frames = []
    for zone in ("+00:00", "+01:00"):
        settings = meter.connector.model_copy(update={"timezone": zone})
        frames.append(
            _parse(connector, data, path, meter.model_copy(update={"connector": settings}))
        )
    return not frames[0].frame.equals(frames[1].frame)


def _meter(args) -> Meter:
    """The meter that --meter-xml or the options describe, checked by the same loader as a
    participant's XML (units against data types, reading kinds, zones, NMIs)."""
    if args.meter_xml:
        name, snippet = "--meter-xml", args.meter_xml
        if not snippet.lstrip().startswith("<"):
            name, snippet = snippet, Path(snippet).read_bytes().decode("utf-8", "replace")
    else:
        name, snippet = "options", _meter_element(args)
    document = (
        '<participant id="cli" name="cli"><properties><property id="cli" name="cli" '
        f'timezone="UTC" country="AU" floorArea="1">\n{snippet}\n'
        "</property></properties></participant>"
    )
    last = snippet.count("\n") + 2  # the snippet's last line in the document

    def snippet_line(line: int | None) -> int | None:
        return line - 1 if name != "options" and line and 1 < line <= last else None

    try:
        meters = load_participant(document.encode(), name).meters
    except ConfigError as exc:  # lines of the snippet, not of the document around it
        raise ConfigError(
            name, [ConfigIssue(snippet_line(i.line), i.message) for i in exc.issues]
        ) from None
    if len(meters) != 1:
        raise ConfigError(name, [ConfigIssue(None, f"give one <meter> element, not {len(meters)}")])
    return meters[0]


def _meter_element(args) -> str:
    """The <meter> element that the options describe."""
    fmt = args.format or "csv"
    if fmt == "nem12" and not args.nmi:
        raise UsageError("--format nem12 needs --nmi (and --suffix, default E1)")
    if fmt == "csv" and not (args.kind and args.unit):
        raise UsageError("a CSV export needs --kind and --unit (or --meter-xml)")
    attributes = {} if fmt == "push" else {"path": "cli/"}
    if fmt == "nem12":
        attributes["suffix"] = "E1"
    for option, attribute in _FORMAT_OPTIONS[fmt].items():
        if getattr(args, option) is not None:
            attributes[attribute] = str(getattr(args, option))
    data_type = args.data_type or (_DATA_TYPE_OF[quantity(args.unit)] if fmt == "csv" else "energy")
    written = "".join(f" {name}={quoteattr(value)}" for name, value in attributes.items())
    return f'<meter id="cli" dataType="{data_type}"><{fmt}{written}/></meter>'


def _unused_options(args) -> list[str]:
    """Notes on options that change nothing for this meter, rather than ignoring them quietly."""
    meter_options = ["format", "data_type", *_CSV_OPTIONS, *_NEM12_OPTIONS]
    if args.meter_xml:
        context, used = "--meter-xml", []
    else:
        context = f"--format {args.format or 'csv'}"
        used = ["format", "data_type", *_FORMAT_OPTIONS[args.format or "csv"]]
    unused = [o for o in meter_options if getattr(args, o) is not None and o not in used]
    notes = [f"--tz has no effect {_zone_unused(args)}"] if args.tz and _zone_unused(args) else []
    flags = ["--" + o.replace("_", "-") for o in unused if o != "tz"]
    if flags:
        notes.append(
            f"{', '.join(flags)} {'has' if len(flags) == 1 else 'have'} no effect with {context}"
        )
    return notes


def _zone_unused(args) -> str | None:
    """Why no zone can change how the file is read (None if one can)."""
    if args.meter_xml:
        return "with --meter-xml: the <meter> element's timezone applies"
    if args.format == "nem12":
        return f"with --format nem12: NEM12 times are NEM time, {NEM_TIME} all year"
    if args.format == "push":
        return "with --format push: a pushed file gives each hour_utc with its offset"
    if args.timestamp_format == "epoch":
        return "with --timestamp-format epoch: Unix times are UTC"
    return None


def _report(args) -> int:
    from blocks import open_warehouse
    from blocks.warehouse import BLOCKS
    from meterflow.reporting.report import write_report

    start, end = date.fromisoformat(args.start), date.fromisoformat(args.end)
    if end <= start:
        raise UsageError(f"--to {args.end} is not after --from {args.start}")
    slug, _, name = args.warehouse.partition("/")
    if not (slug in BLOCKS and name) and not Path(args.warehouse).is_file():
        raise MeterflowError(  # opening it would create an empty one
            f"{args.warehouse}: no warehouse file here; run meterflow dispatch (or demo) first, "
            "or name a warehouse block such as meterflow-postgresql/prod"
        )
    out = args.out or Path("reports") / f"{args.participant}-{args.start}-{args.end}.html"
    with open_warehouse(args.warehouse) as wh:
        loaded = wh.query(
            f"SELECT participant_id FROM {wh.table('dim_participant')} ORDER BY 1"
        ).participant_id.tolist()
        if args.participant not in loaded:
            raise MeterflowError(
                f"{args.warehouse}: no participant {args.participant!r} "
                f"(loaded: {', '.join(loaded) or 'none yet'})"
            )
        write_report(wh, args.participant, start, end, out)
    print(f"report written to {out.resolve()}")
    return 0


def _quiet_prefect(verbose: bool = False) -> None:
    """Progress comes from our own output; Prefect's per-run lines would bury it. Set before
    Prefect is imported: its temporary server process inherits the environment too."""
    # Its telemetry service writes to a fresh SQLite home while the server is migrating it,
    # logging `database is locked` tracebacks, and it calls out to the internet.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Its temporary server takes 20 s or more to start on a busy machine (default timeout: 20).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if verbose:
        return
    # The console only: flow and task run logs still reach the API (and the UI) at INFO.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_DEBUG_LEVEL", "CRITICAL")
    # The temporary server cancels its event flush when it stops and logs that as an error.
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")


def _check_window(args) -> None:
    """--from and --to: both or neither, and --to after --from."""
    if (args.start is None) != (args.end is None):
        raise UsageError("give --from and --to together")
    if args.start is not None and _whole_hour(args.end) <= _whole_hour(args.start):
        raise UsageError(f"--to {args.end} is not after --from {args.start}")


def _backfill(args) -> int:
    import threading

    from rich.progress import Progress

    from flows.backfill import backfill, record_for
    from flows.summary import errors, run_errors
    from meterflow.common.timeutil import HourWindow, chunks

    _check_window(args)
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
        errors(run_errors(state))
        return 1
    result = state.result()
    print(f"backfill done: {result['done_now']} chunks now, {result['done_before']} before")
    return 0


def _demo(args) -> int:
    from flows.demo import run_demo

    return run_demo(args.data_root)


def _dispatch(args) -> int:
    from flows.dispatch import LOOKBACK_HOURS, dispatch, resolve_window
    from flows.summary import errors, show_dispatch, wide_console

    _check_window(args)
    window = resolve_window(args.start, args.end, LOOKBACK_HOURS)
    out = wide_console()
    who = ", ".join(args.participants or []) or f"every participant under {args.data_root}/"
    out.print(f"dispatch {window}: {who}")
    with out.status("dispatching: validate, collect, standardise, aggregate, load, MRV"):
        state = dispatch(
            start=args.start,
            end=args.end,
            data_root=args.data_root,
            warehouse=args.warehouse,
            participants=args.participants,
            shard_size=args.shard_size,
            report_every_hours=args.report_every_hours,
            notify=args.notify,
            return_state=True,
        )
    rows = show_dispatch(out, state)
    if rows is None:
        return 1
    if not rows:
        errors([f"error: {args.data_root}: no participants here (nor storage blocks)"])
        return 1
    failed = sum(r["status"] == "failed" for r in rows)
    out.print(
        f"{sum(r['hours_new'] for r in rows)} meter-hours new or changed; "
        + (f"{failed} failed." if failed else "nothing failed.")
    )
    return 0 if state.is_completed() else 1


def _jobs(args) -> int:
    from blocks import open_warehouse
    from flows.status import jobs_table
    from meterflow.jobs.store import job_overview
    from meterflow.mrv.run import RESOLVE_HINT, needs_action_line, outcome
    from meterflow.mrv.store import needing_action

    with open_warehouse(args.warehouse) as wh:
        wh.prepare()
        jobs = job_overview(wh, args.participant, args.type)
        stuck = needing_action(wh, args.participant) if args.type != "etl" else []
    _wide().print(jobs_table(jobs, f"Meter jobs in {args.warehouse}"))
    if stuck:
        print(f"{len(stuck)} MRV records need action:")
        for record, why in stuck:
            print(f"{record.participant_id} {needs_action_line(outcome(record, why))}")
        print(RESOLVE_HINT)
        return 1
    return 0


def _tasks(args) -> int:
    from blocks import open_warehouse
    from flows.status import tasks_table
    from meterflow.jobs.store import task_history

    _check_window(args)
    start, end = _whole_hour(args.start), _whole_hour(args.end)
    with open_warehouse(args.warehouse) as wh:
        wh.prepare()
        tasks = task_history(wh, args.meter, start, end, args.participant)
    if tasks.empty:
        _error(f"error: no task of meter {args.meter} between {args.start} and {args.end}")
        return 1
    for participant_id, mine in tasks.groupby("participant_id"):
        title = f"Tasks of {participant_id}/{args.meter}, {start:%Y-%m-%d %H:%M}..{end:%H:%M}"
        _wide().print(tasks_table(mine, title))
    return 0


def _status(args) -> int:
    import pandas as pd

    from blocks import open_warehouse
    from flows.status import health_table
    from meterflow.jobs import health

    with open_warehouse(args.warehouse) as wh:
        wh.prepare()
        found = health.current(wh, args.participant)
    if found.empty:
        _error("error: no meter health yet: a dispatch evaluates it (meterflow dispatch)")
        return 1
    for participant_id, mine in found.groupby("participant_id"):
        evaluated = pd.Timestamp(mine["evaluated_utc"].max())
        _wide().print(
            health_table(mine, f"{participant_id}: meters as of {evaluated:%Y-%m-%d %H:%M} UTC")
        )
    return 1 if found["state"].isin(("silent", "failing")).any() else 0  # for scripts


def _alerts(args) -> int:
    from datetime import timedelta

    from flows.automations import install

    for automation in install(args.notify, timedelta(hours=args.quiet_hours)):
        print(f"automation {automation.name!r} ({automation.id}): {automation.description}")
    return 0


def _wide():
    from rich.console import Console

    return Console(width=max(Console().width, 190))


def _mrv(args) -> int:
    from flows.mrv import mrv
    from flows.summary import errors, run_errors
    from meterflow.mrv.run import RecordsNeedAction

    state = mrv(
        participant_id=args.participant,
        until=args.until,
        data_root=args.data_root,
        warehouse=args.warehouse,
        return_state=True,
    )
    result = state.result(raise_on_failure=False)
    waiting = isinstance(result, RecordsNeedAction)
    if not state.is_completed() and not waiting:
        errors(run_errors(state))
        return 1
    for row in result.rows if waiting else result:
        print(
            f"{row['meter']} {row['period_start']} rev {row['revision']}: {row['status']} "
            f"{row['energy_kwh']} kWh {row['why']}"
        )
    print(f"{len(result.rows if waiting else result)} records extracted or submitted in this run")
    if waiting:
        errors(run_errors(state))
        return 1
    return 0


def _mrv_resolve(args) -> int:
    import getpass

    from blocks import open_warehouse
    from meterflow.mrv.store import MrvStore

    try:
        by = args.by or getpass.getuser()
    except (KeyError, OSError):  # no login name in this environment
        by = "unknown"
    to = "submitted" if args.submitted else "verified"
    with open_warehouse(args.warehouse) as wh:
        record = MrvStore(wh).resolve(args.record, to, by, args.evidence)
    then = "kept as submitted" if args.submitted else "the next `meterflow mrv` sends it"
    print(f"record {record.record_id} rev {record.revision}: now {record.status} ({then})")
    return 0


def _migrate(args) -> int:
    from blocks.storage import open_storage, participant_ids
    from meterflow.collection.migrate import migrate
    from meterflow.common.storage import CONFIG_KEY
    from meterflow.configuration.participant_xml import load_participant

    for pid in args.participants or participant_ids(args.data_root):
        storage = open_storage(args.data_root, pid)
        participant = load_participant(storage.read(CONFIG_KEY), f"{pid}:{CONFIG_KEY}")
        done = migrate(storage, participant)
        if done.removed:
            print(
                f"{pid}: {done.payloads} payloads and {done.hours} meter-hours converted, "
                f"{done.removed} old objects removed"
            )
        else:
            print(f"{pid}: already in the columnar layout")
    return 0


def _doctor(args) -> int:
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


if __name__ == "__main__":
    sys.exit(main())


def _serve(args) -> int:
    import uvicorn
    from prefect.settings import get_current_settings

    from blocks.storage import open_storage
    from blocks.warehouse import BLOCKS, open_warehouse
    from meterflow.common.storage import LocalStorage
    from meterflow.portal.app import create_app, read_duckdb
    from meterflow.portal.settings import PortalSettings

    def warehouse(spec: str):
        slug, _, name = spec.partition("/")
        return open_warehouse(spec) if slug in BLOCKS and name else read_duckdb(spec)

    given = {"warehouse": args.warehouse, "data_root": args.data_root}
    overrides = {k: v for k, v in given.items() if v}
    if not os.environ.get("METERFLOW_PORTAL_SESSION_SECRET"):
        # Sessions then end when the portal restarts; set one for anything but a try-out.
        overrides["session_secret"] = secrets.token_urlsafe(32)
        _note("METERFLOW_PORTAL_SESSION_SECRET is not set: sessions end when the portal stops")
    settings = PortalSettings(**overrides)
    if not settings.oidc_issuer:
        _note("no METERFLOW_PORTAL_OIDC_ISSUER: sign in with API tokens (meterflow token create)")
    print(f"Meterflow portal on http://{args.host}:{args.port} (API: /docs)")
    # Buckets come from participants' storage blocks when there is a Prefect API to hold them;
    # the embedded default runs no Prefect server for the portal.
    storage = open_storage if get_current_settings().api.url else LocalStorage
    app = create_app(settings, warehouse, storage)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _token(args) -> int:
    from blocks import open_warehouse
    from meterflow.portal import tokens

    now = datetime.now(UTC)
    with open_warehouse(args.warehouse) as wh:
        wh.prepare()
        if args.action == "create":
            if not args.participant:
                raise UsageError("token create needs --participant")
            issued = tokens.issue_token(wh, args.participant, args.label, now)
            print(f"token {issued.token_id} for {issued.participant_id} (shown once, keep it):")
            print(issued.token)
        elif args.action == "revoke":
            if not args.token_id:
                raise UsageError("token revoke needs --id")
            tokens.revoke_token(wh, args.token_id, now)
            print(f"token {args.token_id} revoked")
        else:
            print(tokens.list_tokens(wh, args.participant).to_string(index=False))
    return 0
