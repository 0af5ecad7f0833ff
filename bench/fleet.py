"""What the benchmarks share: a synthetic fleet of CSV meters, the bare pipeline, and a table.

The fleet is participants of up to 100 meters, each meter with one CSV export of 5-minute
energy per UTC day (the shape of a Wattwatchers or logger export). Same seed, same bytes.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from bench.bare_worker import collect_participant
from connectors import health_thresholds
from meterflow.collection.catalog import read_catalog
from meterflow.common.storage import CONFIG_KEY, LocalStorage
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.fleets import csv_meter, participant_xml
from meterflow.configuration.participants import list_participants
from meterflow.jobs.track import track
from meterflow.warehouse import DuckDBWarehouse
from meterflow.warehouse.loads import Pending, load_at_least, load_pending
from tasks import worker

START = datetime(2026, 4, 1, tzinfo=UTC)
PER_PARTICIPANT = 100


def make_fleet(
    data_root: Path, meters: int, days: int, seed: int = 7, per_participant: int = PER_PARTICIPANT
) -> HourWindow:
    """Write `meters` CSV meters with `days` daily exports, `per_participant` meters to each
    participant; return the window they cover."""
    rng = np.random.default_rng(seed)
    for first in range(0, meters, per_participant):
        pid = f"p{first // per_participant:03d}"
        ids = [f"{pid}-m{i:03d}" for i in range(min(per_participant, meters - first))]
        storage = LocalStorage(data_root, pid)
        meter_xml = [csv_meter(m, interval_minutes=5) for m in ids]
        storage.write(CONFIG_KEY, participant_xml(pid, meter_xml, site=f"{pid}-site"))
        for day in range(days):
            stamps = pd.date_range(START + timedelta(days=day), periods=288, freq="5min")
            column = np.array(stamps.strftime("%Y-%m-%dT%H:%M:%SZ"), dtype=object)
            for meter in ids:
                values = np.round(rng.gamma(2.0, 0.05, 288), 4).astype(str)
                lines = "\n".join(column + "," + values)
                key = f"exports/{meter}/{stamps[0]:%Y-%m-%d}.csv"
                storage.write(key, f"timestamp,value\n{lines}\n".encode())
    return HourWindow(START, START + timedelta(days=days))


def make_fleet_apart(
    data_root: Path, meters: int, days: int, per_participant: int = PER_PARTICIPANT
) -> HourWindow:
    """`make_fleet` in a process of its own, so that what writing the fleet leaves in memory
    (about 100 MiB at 10,000 meters) is not counted as the flow's."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(make_fleet, data_root, meters, days, 7, per_participant).result()


def run_bare(data_root: Path, warehouse: Path, window: HourWindow) -> None:
    """Meterflow's domain code with no Prefect, distributed as the dispatch flow distributes it:
    each participant validated, planned, collected and merged in a pool of worker processes
    (one per core), and the participants done meanwhile loaded together in this process as the
    pool works on the next (reports aside: they are rendered at most daily, not per dispatch);
    then the meters' ETL tasks recorded and their health evaluated, as the flow does."""
    started = datetime.now(UTC)
    participants, outcomes = [], []
    workers = os.cpu_count() or 1
    with ProcessPoolExecutor(  # its workers start as the flow's do
        workers, mp_context=worker.WORKER_CONTEXT, initializer=worker.start_worker, initargs=({},)
    ) as pool:
        pending = {
            pool.submit(collect_participant, data_root, pid, window)
            for pid in list_participants(data_root)
        }
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            while pending and len(done) < load_at_least(len(done) + len(pending), workers):
                more, pending = wait(pending, return_when=FIRST_COMPLETED)
                done |= more
            batch = []
            for future in done:
                participant, found = future.result()
                storage = LocalStorage(data_root, participant.id)
                batch.append(Pending(storage, participant, read_catalog(storage).runs))
                participants.append(participant)
                outcomes += found
            if not pending:  # as the flow does: the workers go before the last load
                pool.shutdown(wait=False)
            with DuckDBWarehouse(warehouse) as wh:
                load_pending(wh, batch, datetime.now(UTC))
    with DuckDBWarehouse(warehouse) as wh:
        ids = [p.id for p in participants]
        now = datetime.now(UTC)
        track(wh, ids, participants, outcomes, health_thresholds, started, now, window.end)


# The plain one-pass job a data engineer would write over the same exports: no ledger, no
# quality or coverage, no plausibility, no raw archive, no DST-aware local days, no calendar.
PEER_SQL = """
CREATE TABLE hourly AS
SELECT split_part(filename, '/', -4) AS participant_id,
       split_part(filename, '/', -2) AS meter_id,
       date_trunc('hour', "timestamp") AS hour_utc,
       sum("value") AS kwh
FROM read_csv('{root}/*/exports/*/*.csv', filename = true, header = true,
              columns = {{'timestamp': 'TIMESTAMPTZ', 'value': 'DOUBLE'}})
GROUP BY ALL;
COPY (SELECT *, CAST(timezone('UTC', hour_utc) AS DATE) AS day FROM hourly)
  TO '{out}' (FORMAT parquet, PARTITION_BY (participant_id, day));
"""


def run_peer(data_root: Path, out: Path, database: Path) -> None:
    """(p) one DuckDB statement: every CSV read once, 5-minute values summed into UTC hours,
    one Parquet dataset partitioned by participant and day, and a table."""
    with duckdb.connect(str(database)) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(PEER_SQL.format(root=data_root, out=out))


def timed(run: Callable[..., object], *args, **kwargs) -> float:
    """Seconds `run` took, begun with no dirty page waiting to be written: the fleet's copies
    and the run before would otherwise be written back during it."""
    os.sync()
    started = time.perf_counter()
    run(*args, **kwargs)
    return time.perf_counter() - started


def peak_rss_mib() -> float:
    """This process's peak resident memory so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class FlowMemory:
    """Peak memory of this process plus its shard worker processes, sampled as the sum of their
    proportional set sizes (PSS: shared library pages counted once, not once per process); the
    Prefect API server (uvicorn) is left out, as it runs apart in production."""

    def __init__(self, every: float = 0.2):
        self.peak_mib = 0.0
        self._every, self._stop = every, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> FlowMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self._every):
            pids = [os.getpid(), *_descendants(os.getpid())]
            total = sum(_pss_kib(p) for p in pids if b"uvicorn" not in _cmdline(p))
            self.peak_mib = max(self.peak_mib, total / 1024)


def _descendants(root: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [root]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found.extend(children)
        frontier = children
    return found


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def quiet_prefect(home: Path) -> None:
    """A private Prefect home for the benchmark. Runs still log INFO to the API, as in use;
    only the console is kept to warnings so that the table stays readable."""
    os.environ["PREFECT_HOME"] = str(home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    # The temporary server cancels its event flush when it stops and logs that as an error.
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    print(f"\n{title}  (cores: {os.cpu_count()})")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
