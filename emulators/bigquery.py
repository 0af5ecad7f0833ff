"""A BigQuery API server on loopback, for tests: bqemulator (Google's REST API served on DuckDB).

bqemulator 1.4 needs DuckDB 1.5 with its `spatial` extension, while the project pins DuckDB 2.0,
so it runs as a subprocess from its own venv, `.venv-bq` (`make setup` builds it from
`emulators/bigquery-requirements.lock`). DuckDB would download `spatial` on first start; the
venv has it from the `duckdb-extension-spatial` wheel instead, linked into the server's private
HOME where `INSTALL spatial` finds it, so the server starts offline.

Run by `.venv-bq/bin/python`, this file patches three gaps of bqemulator 1.4.0 against what real
BigQuery does, then starts its CLI. They change the test server only, never the client library
or Meterflow (docs/warehouse.md lists what the server still does differently):
1. google-cloud-bigquery sends the media part of a multipart upload (`load_table_from_dataframe`)
   as `Content-Type: */*`, which bqemulator refuses.
2. BigQuery DDL's `PRIMARY KEY (...) NOT ENFORCED` reaches DuckDB verbatim and fails to parse;
   BigQuery never enforces it, so the clause is dropped before translation.
3. Real BigQuery reports `statistics.query.dmlStats` (rows inserted, updated, deleted) for DML;
   bqemulator only reports the total. MERGE runs with DuckDB's `RETURNING merge_action` and the
   actions are counted; INSERT, UPDATE and DELETE report their total under their own name.
   `--without-dml-stats` leaves this one out: a server that sends no dmlStats.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv-bq" / "bin" / "python"
NO_DML_STATS = "--without-dml-stats"


class BigQueryEmulator:
    """bqemulator on a free port of 127.0.0.1, in memory; `gs://bucket/path` in a load job reads
    the file `gcs_root/bucket/path` (gcp-storage-emulator's on-disk store is such a tree)."""

    def __init__(
        self,
        workdir: Path,
        gcs_root: Path | None = None,
        project: str = "test-project",
        dml_stats: bool = True,
    ) -> None:
        self.workdir, self.project, self.dml_stats = workdir, project, dml_stats
        self.gcs_root = gcs_root or workdir / "gcs"
        self.log = workdir / "bqemulator.log"
        self._process: subprocess.Popen | None = None
        self._port = 0

    def start(self, timeout: float = 60.0) -> str:
        """Start the server and return its URL once it answers /readyz."""
        if not PYTHON.exists():
            raise RuntimeError(f"{PYTHON} not found: `make setup` builds the BigQuery emulator")
        home = self.workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        self.gcs_root.mkdir(parents=True, exist_ok=True)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self._port = sock.getsockname()[1]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "NO_PROXY": "*",
            "BQEMU_GCS_LOCAL_ROOT": str(self.gcs_root),
            "BQEMU_LOG_LEVEL": "warning",
            "BQEMU_LOG_FORMAT": "console",
            "BQEMU_METRICS_ENABLED": "false",
            "BQEMU_TRACING_ENABLED": "false",
        }
        command = [str(PYTHON), __file__, *([] if self.dml_stats else [NO_DML_STATS])]
        command += ["start", "--rest-host", "127.0.0.1", "--rest-port", str(self._port)]
        command += ["--grpc-host", "127.0.0.1", "--grpc-port", "0"]
        command += ["--project", self.project, "--ephemeral"]
        with self.log.open("wb") as out:
            self._process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"bqemulator did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        return self.url

    def _ready(self) -> bool:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as response,
        ):
            return response.status == 200
        return False

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self._process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def client(self) -> Any:
        """A real `google.cloud.bigquery.Client` for this server (no credentials needed)."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(
            project=self.project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.url),
        )


# What follows runs inside .venv-bq, in the server process.


def _link_extensions(home: Path) -> None:
    """Put the extension files of the duckdb-extension-* wheels where DuckDB installs them."""
    import duckdb
    import duckdb_extension_avro
    import duckdb_extension_spatial

    platform = duckdb.execute("PRAGMA platform").fetchone()[0]
    for package in (duckdb_extension_spatial, duckdb_extension_avro):
        for shipped in Path(package.__file__).parent.glob("extensions/*/*.duckdb_extension"):
            target = home / ".duckdb" / "extensions" / shipped.parent.name / platform
            target.mkdir(parents=True, exist_ok=True)
            link = target / shipped.name
            if not link.exists():
                link.symlink_to(shipped)


_NOT_ENFORCED = re.compile(
    r",\s*(?:CONSTRAINT\s+\w+\s+)?(?:PRIMARY\s+KEY|FOREIGN\s+KEY)\s*\([^)]*\)"
    r"(?:\s*REFERENCES\s+[^()]+\([^)]*\))?\s*NOT\s+ENFORCED",
    re.IGNORECASE,
)
_DML_KEYS = {"INSERT": "insertedRowCount", "UPDATE": "updatedRowCount", "DELETE": "deletedRowCount"}


def _patch_bqemulator(dml_stats: bool) -> None:
    import contextvars

    import bqemulator.api.routes.upload as upload
    import bqemulator.jobs.executor as executor
    from bqemulator.domain.result import Ok
    from bqemulator.sql.translator import SQLTranslator

    # 1. the media type google-cloud-bigquery sends
    upload._PERMITTED_MEDIA_CONTENT_TYPES = (*upload._PERMITTED_MEDIA_CONTENT_TYPES, "*/*")

    # 2. (and 3.) the SQL as DuckDB gets it
    translate = SQLTranslator.translate

    def translate_patched(self, bq_sql, *args, **kwargs):
        result = translate(self, _NOT_ENFORCED.sub("", bq_sql), *args, **kwargs)
        duck_sql = result.value if isinstance(result, Ok) else ""
        merge = duck_sql.lstrip().upper().startswith("MERGE")
        if dml_stats and merge and "RETURNING" not in duck_sql.upper():
            result = Ok(duck_sql.rstrip().rstrip(";") + " RETURNING merge_action")
        return result

    SQLTranslator.translate = translate_patched
    if not dml_stats:
        return

    # 3. dmlStats: the MERGE's actions, counted from its RETURNING rows
    actions = contextvars.ContextVar("merge_actions", default=None)
    affected_rows = executor._extract_dml_affected_rows
    query_statistics = executor._build_query_statistics

    def affected_rows_patched(arrow_table):
        if arrow_table.num_columns == 1 and arrow_table.column_names == ["merge_action"]:
            done = arrow_table.column(0).to_pylist()
            actions.set({action: done.count(action) for action in _DML_KEYS})
            return len(done)
        actions.set(None)
        return affected_rows(arrow_table)

    def query_statistics_patched(*args, **kwargs):
        statistics = query_statistics(*args, **kwargs)
        kind, total = kwargs.get("statement_type"), kwargs.get("num_dml_affected_rows")
        if total is not None and (kind in _DML_KEYS or kind == "MERGE"):
            counts = (actions.get() or {}) if kind == "MERGE" else {kind: total}
            statistics["query"]["dmlStats"] = {
                key: str(counts.get(action, 0)) for action, key in _DML_KEYS.items()
            }
        actions.set(None)
        return statistics

    executor._extract_dml_affected_rows = affected_rows_patched
    executor._build_query_statistics = query_statistics_patched


def _serve(args: list[str]) -> None:
    dml_stats = NO_DML_STATS not in args
    _link_extensions(Path.home())
    _patch_bqemulator(dml_stats)
    from bqemulator.cli import main

    sys.exit(main([a for a in args if a != NO_DML_STATS], prog_name="bqemulator"))


if __name__ == "__main__":
    sys.path.remove(str(Path(__file__).parent))  # this folder's modules are not the server's
    _serve(sys.argv[1:])
