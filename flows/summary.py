"""What a person sees of a run started from the command line: the table of meters, one line per
meter that failed or was quarantined, and one line per reason when a run failed as a whole.

`meterflow dispatch` and `meterflow demo` show a dispatch the same way; Prefect's own log stream
stays off the console (the CLI mutes it unless `--verbose`), and still reaches the API and UI.
"""

from __future__ import annotations

import sys

from prefect.client.schemas.objects import State
from rich.console import Console
from rich.table import Table

from flows.dispatch import DispatchFailed
from meterflow.common.errors import MeterflowError

COUNTS = ("files_new", "hours_new", "hours_cached", "hours_missing")


def wide_console() -> Console:
    """stdout, wide enough for the tables when it is not a terminal."""
    return Console(width=max(Console().width, 120))


def meter_table(rows: list[dict]) -> Table:
    """The dispatch summary rows (one per meter) as a table."""
    table = Table(title="Dispatch: meters")
    for column in ("participant", "meter", *(c.replace("_", " ") for c in COUNTS), "status"):
        table.add_column(column, justify="left" if column in ("participant", "meter") else "right")
    for r in rows:
        status = r["status"] if r["status"] == "ok" else f"[yellow]{r['status']}[/]"
        table.add_row(r["participant"], r["meter"], *(str(r[c]) for c in COUNTS), status)
    return table


def meter_problems(rows: list[dict]) -> list[str]:
    """One line per meter that is not ok: `error:` if it failed, `warning:` if its files were
    quarantined or its source deferred the call."""
    lines = []
    for r in rows:
        where, why = f"{r['participant']}/{r['meter']}", one_line(r["why"])
        if r["status"] == "failed":
            lines.append(f"error: {where}: {why}")
        elif r["status"] != "ok":
            lines.append(f"warning: {where}: {r['status']}: {why}")
    return lines


def one_line(text: str) -> str:
    """A reason that spans lines (a list after 'N records need action:') on one line."""
    joined = ""
    for line in filter(None, map(str.strip, text.splitlines())):
        joined += line if not joined else (" " if joined.endswith(":") else "; ") + line
    return joined


def run_errors(state: State) -> list[str]:
    """The `error:` lines of a run that did not complete: a reason we raised is shown as it is,
    one line per line; anything else is unexpected and names its type."""
    error = state.result(raise_on_failure=False)
    if isinstance(error, MeterflowError):
        return [f"error: {line}" for line in str(error).splitlines() if line.strip()]
    reason = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else ""
    reason = one_line(reason or state.message or state.type.value.lower())
    return [f"error: {reason} (run again with --verbose to see Prefect's log)"]


def show_dispatch(out: Console, state: State) -> list[dict] | None:
    """Print a dispatch's meters and problems; return its rows (None if it stopped before it
    had any: then the reason is printed instead)."""
    result = state.result(raise_on_failure=False)
    rows = result.rows if isinstance(result, DispatchFailed) else result
    if not isinstance(rows, list):
        errors(run_errors(state))
        return None
    out.print(meter_table(rows))
    errors(meter_problems(rows))
    return rows


def errors(lines: list[str]) -> None:
    """On stderr, after what stdout holds so far (the two often go to one terminal)."""
    sys.stdout.flush()
    for line in lines:
        print(line, file=sys.stderr)
