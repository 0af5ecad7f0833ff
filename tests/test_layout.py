"""The domain core and the connectors run without Prefect."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("package", ["meterflow", "connectors"])
def test_package_source_never_imports_prefect(package):
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "prefect"]
    assert offenders == []


def test_importing_every_core_module_loads_no_prefect():
    modules = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for package in ("meterflow", "connectors")
        for p in sorted((ROOT / package).rglob("*.py"))
    ]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_worker_collecting_a_local_participant_loads_no_prefect(tmp_path):
    """The flow's worker processes start without Prefect (1.6 s and 65 MiB each): a
    participant whose storage is a local folder and whose meters read files needs none. Nor
    does a valid configuration need xmlschema, or collection the warehouse's DuckDB (0.17 s of
    each worker's start)."""
    code = f"""
import sys
from datetime import UTC, datetime
from meterflow.common.storage import CONFIG_KEY, LocalStorage
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.fleets import csv_meter, participant_xml
from tasks import worker

storage = LocalStorage({str(tmp_path)!r}, "p1")
storage.write(CONFIG_KEY, participant_xml("p1", [csv_meter("m1", interval_minutes=60)]))
storage.write("exports/m1/2026-04-01.csv", b"timestamp,value\\n2026-04-01T00:00:00Z,1.5\\n")
window = HourWindow(datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 4, 2, tzinfo=UTC))
done = worker.collect_participant({str(tmp_path)!r}, "p1", window, 100, True, False)
print(done.error, sum(o.hours_new for o in done.report.outcomes))
print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'))
print([m for m in ("xmlschema", "duckdb") if m in sys.modules])
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    collected, prefect_modules, heavy = out.stdout.strip().splitlines()
    assert collected == "None 1"
    assert prefect_modules == "[]"
    assert heavy == "[]"
