"""The flow's worker processes start with the domain code and the connectors only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MAIN = """
from pathlib import Path

import prefect.cli  # as the main module of `prefect flow-run execute`, a deployed run's process

if __name__ == "__mp_main__":
    Path({marker!r}).touch()

if __name__ == "__main__":
    from probe import loaded
    from tasks.pool import in_worker, worker_pool

    with worker_pool():
        print(in_worker(loaded, "prefect"), in_worker(loaded, "tasks.worker"))
"""


def test_a_worker_does_not_run_the_flow_process_main_module_nor_import_prefect(tmp_path):
    """A spawned process runs its parent's main module first; for a deployed flow run that is
    Prefect's CLI (0.8 s and 48 MiB PSS more a worker here), in every worker of every dispatch."""
    marker = tmp_path / "ran"
    (tmp_path / "main.py").write_text(MAIN.format(marker=str(marker)))
    (tmp_path / "probe.py").write_text(
        "import sys\n\n\ndef loaded(module):\n    return module in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, str(tmp_path / "main.py")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
    assert not marker.exists()
