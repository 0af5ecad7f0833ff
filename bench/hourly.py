"""Hourly dispatch: a fleet of CSV meters (100 per participant) whose first day is collected,
then one new hour per meter through the dispatch flow, as the hourly schedule runs it.

    .venv/bin/python -m bench.hourly --meters 10000
    .venv/bin/python -m bench.hourly --meters 1000 --gcs

Prints the hour's wall seconds (Prefect's task runs included; the API server's start is not, as
it runs apart in production) and the storage writes per participant (files created or rewritten,
and deleted). With `--gcs` every participant's storage is a bucket of gcp-storage-emulator on
loopback, reached through its `ParticipantStorage` block, and the requests each bucket served
in that hour are printed by kind. Targets: 10,000 meters in at most 30 s, at most 3 writes per
participant. Reports are off: a dispatch renders them at most once a day.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import socket
import statistics
import tempfile
from collections import Counter
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

from bench.fleet import PER_PARTICIPANT, make_fleet, print_table, quiet_prefect, timed
from meterflow.collection.shards import DEFAULT_SHARD_SIZE
from meterflow.common.timeutil import HourWindow

# The emulator logs one line per request: '"GET /storage/v1/b/<bucket>/o/<key>?... HTTP/1.1" 200 -'
REQUEST = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP')
BUCKET = re.compile(r"/b/(?P<bucket>[^/?]+)(?P<rest>[^?]*)")


def kind_of(method: str, path: str) -> tuple[str, str] | None:
    """(bucket, request kind) of an emulator request line, None for requests on no bucket."""
    found = BUCKET.search(path)
    if found is None:
        return None
    if path.startswith("/upload/"):
        kind = "upload"
    elif method == "GET" and ("alt=media" in path or path.startswith("/download/")):
        kind = "GET object"
    elif method == "GET" and found["rest"] in ("/o", "/o/"):
        kind = "LIST"
    elif method == "GET":
        kind = "GET metadata"
    else:
        kind = method
    return found["bucket"], kind


class RequestCount(logging.Handler):
    """Counts the requests gcp-storage-emulator serves, per bucket and kind."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[tuple[str, str]] = Counter()
        self.counting = False

    def emit(self, record: logging.LogRecord) -> None:
        found = REQUEST.search(record.getMessage())
        if self.counting and found:
            key = kind_of(found["method"], found["path"])
            if key is not None:
                self.counts[key] += 1


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


def local_writes(before: dict, after: dict, participants: set[str]) -> tuple[Counter, Counter]:
    """Files created or rewritten, and deleted, per participant folder."""
    written = Counter(k.split("/")[0] for k, v in after.items() if before.get(k) != v)
    deleted = Counter(k.split("/")[0] for k in before if k not in after)
    return (
        Counter({p: n for p, n in written.items() if p in participants}),
        Counter({p: n for p, n in deleted.items() if p in participants}),
    )


def new_hour(source: Path, window: HourWindow) -> dict[str, bytes]:
    """One new hour of 5-minute readings for every meter of the fleet under `source`."""
    files = {}
    for folder in sorted(source.glob("*/exports/*")):
        rows = "".join(
            f"{window.start + timedelta(minutes=5 * i):%Y-%m-%dT%H:%M:%SZ},0.05\n"
            for i in range(12)
        )
        key = f"{folder.relative_to(source)}/{window.start:%Y-%m-%dT%H}.csv"
        files[key] = ("timestamp,value\n" + rows).encode()
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=10000)
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE)
    parser.add_argument("--gcs", action="store_true", help="participants' storage in GCS buckets")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mf-hourly-"))
    quiet_prefect(work / "prefect")
    from prefect.testing.utilities import prefect_test_harness  # after PREFECT_HOME is set

    from flows.dispatch import dispatch

    source, data_root = work / "source", work / "data"
    day = make_fleet(source, args.meters, 1)
    folders = {p.name for p in source.iterdir() if p.is_dir()}
    hour = HourWindow(day.end, day.end + timedelta(hours=1))
    counter = RequestCount()
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        stack.enter_context(prefect_test_harness(server_startup_timeout=90))
        put = _gcs_participants(stack, source, counter) if args.gcs else _local(source, data_root)

        def run(window: HourWindow) -> None:
            dispatch(
                start=window.start.isoformat(),
                end=window.end.isoformat(),
                data_root=str(data_root),
                warehouse=str(work / "warehouse.duckdb"),
                shard_size=args.shard_size,
                report_every_hours=None,
            )

        run(day)  # the day before: collected and loaded, not timed
        for key, data in new_hour(source, hour).items():
            put(key, data)
        before = snapshot(data_root) if data_root.exists() else {}
        counter.counting = True
        seconds = timed(lambda: run(hour))
        counter.counting = False
        after = snapshot(data_root) if data_root.exists() else {}
    participants = -(-args.meters // PER_PARTICIPANT)
    if args.gcs:
        written = Counter({b: n for (b, kind), n in counter.counts.items() if kind == "upload"})
        deleted = Counter({b: n for (b, kind), n in counter.counts.items() if kind == "DELETE"})
    else:
        written, deleted = local_writes(before, after, folders)
    rows = [
        [
            args.meters,
            participants,
            "gcs" if args.gcs else "local",
            f"{seconds:.1f}",
            f"{args.meters / seconds:,.0f}",
            _spread(written, participants),
            _spread(deleted, participants),
        ]
    ]
    print_table(
        "hourly dispatch: one new hour per meter (Prefect included)",
        [
            "meters",
            "participants",
            "storage",
            "seconds",
            "meters/s",
            "writes/participant",
            "deletes/participant",
        ],
        rows,
    )
    if args.gcs:
        kinds = sorted({kind for _, kind in counter.counts})
        per_bucket = {
            kind: [n for (_, k), n in counter.counts.items() if k == kind] for kind in kinds
        }
        print_table(
            "GCS requests per participant's bucket in that hour (median, max)",
            ["request", "median", "max", "all buckets"],
            [[k, statistics.median(v), max(v), sum(v)] for k, v in per_bucket.items()],
        )


def _spread(counts: Counter, participants: int) -> str:
    values = list(counts.values()) + [0] * (participants - len(counts))
    return f"{statistics.median(values):g} (max {max(values)})"


def _local(source: Path, data_root: Path):
    shutil.copytree(source, data_root)

    def put(key: str, data: bytes) -> None:
        (data_root / key).write_bytes(data)

    return put


def _gcs_participants(stack: ExitStack, source: Path, counter: RequestCount):
    """A bucket and a storage block per participant, holding what `source` holds."""
    from gcp_storage_emulator.server import create_server
    from prefect_gcp import GcpCredentials
    from prefect_gcp.cloud_storage import GcsBucket

    from blocks.storage import ParticipantStorage, block_name
    from emulators.google_oauth import GoogleOAuthEmulator

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    stack.callback(server.stop)
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    emulator_log = logging.getLogger("gcp_storage_emulator")
    emulator_log.setLevel(logging.INFO)
    emulator_log.propagate = False
    emulator_log.addHandler(counter)
    oauth = stack.enter_context(GoogleOAuthEmulator())
    info = oauth.service_account("bench@meterflow-bench.iam.gserviceaccount.com", "bench")
    credentials = GcpCredentials(service_account_info=info, project="meterflow-bench")
    client = credentials.get_cloud_storage_client()
    buckets = {}
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        pid = folder.name
        buckets[pid] = client.create_bucket(f"bench-{pid}")
        gcs = GcsBucket(bucket=buckets[pid].name, gcp_credentials=credentials)
        ParticipantStorage(participant=pid, bucket=gcs).save(block_name(pid), overwrite=True)
        for path in folder.rglob("*"):
            if path.is_file():
                buckets[pid].blob(str(path.relative_to(folder))).upload_from_filename(path)

    def put(key: str, data: bytes) -> None:
        pid, rest = key.split("/", 1)
        buckets[pid].blob(rest).upload_from_string(data)

    return put


if __name__ == "__main__":
    main()
