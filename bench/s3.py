"""S3 collection: object GETs per dispatch and peak memory of one large export, side by side.

    .venv/bin/python -m bench.s3 --mb 50 200

A moto S3 server on loopback holds one CSV export of about --mb MB (each size in turn: a
meter's one-minute kWh with the columns a logger export carries). Each side runs in a fresh
process and reports its peak RSS above the process's own baseline (after imports):
(p) the peer: boto3 download_file to a local file, DuckDB sums it by UTC hour;
(a) Meterflow: collect_meter of an s3 meter over the export's span (GET, raw log, parse,
    standardise, day files).
Prints, per size, seconds, peak MiB and peak per MiB of object of each, a/p; the object GETs of
three dispatches: the first, a rerun with nothing new, and one after the object is rewritten;
and how a's peak grew from the first size to the last. Targets (issue 17): rerun 0 GETs,
rewrite 1; the object never whole in memory (it streams into the raw log and is parsed from
there in parts), so a's peak grows with the readings (about 50 bytes a row), not the bytes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

BUCKET, KEY = "bench-drop", "exports/main/logger.csv"
CONFIG = """<participant id="acme" name="Acme">
  <properties>
    <property id="hq" name="HQ" timezone="UTC" country="AU" region="NSW" floorArea="100">
      <meter id="s3-main" dataType="energy" credentials="acme-aws">
        <s3 bucket="bench-drop" prefix="exports/main/">
          <csv kind="interval" unit="kWh" intervalMinutes="1"/>
        </s3>
      </meter>
      <meter id="s3-warm" dataType="energy" credentials="acme-aws">
        <s3 bucket="bench-drop" prefix="warm/"><csv kind="interval" unit="kWh"/></s3>
      </meter>
    </property>
  </properties>
</participant>"""
START = datetime(2026, 1, 1, tzinfo=UTC)


def export(megabytes: int, scale: float = 1.0, minutes: int | None = None) -> tuple[bytes, int]:
    """A logger export of about `megabytes` (or `minutes` rows): one-minute rows with serial,
    channel, flags and electrical readings next to timestamp and value; its number of rows."""
    import numpy as np
    import pandas as pd

    row_bytes = 112
    minutes = minutes or megabytes * 1024 * 1024 // row_bytes
    stamps = pd.date_range(START, periods=minutes, freq="min")
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "value": (rng.random(minutes) * scale).round(5),
            "serial": "LG-00042-A",
            "channel": "mains-3ph",
            "quality": "A",
            "voltage_v": (230 + rng.random(minutes) * 10).round(2),
            "current_a": (rng.random(minutes) * 60).round(3),
            "power_factor": (0.9 + rng.random(minutes) / 10).round(4),
            "comment": "logger firmware 4.2.1 interval export",
        }
    )
    return frame.to_csv(index=False).encode(), minutes


def _rss_mib() -> float:
    """This process's resident memory now."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 1024 / 1024


class Peak:
    """The highest resident memory above the starting one while the block runs, sampled every
    5 ms (ru_maxrss would also count what imports once held and freed)."""

    def __enter__(self) -> Peak:
        self.base, self.high, self._done = _rss_mib(), 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.high = max(self.high, _rss_mib() - self.base)

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self.high = max(self.high, _rss_mib() - self.base)


def peer(endpoint: str, out: dict) -> None:
    import boto3
    import duckdb

    started = time.perf_counter()
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="AKIABENCH", aws_secret_access_key="bench",
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as folder, Peak() as peak:
        path = Path(folder) / "logger.csv"
        client.download_file(BUCKET, KEY, str(path))
        hours = duckdb.sql(
            f"SELECT date_trunc('hour', timestamp::TIMESTAMPTZ) AS hour, sum(value) AS kwh "
            f"FROM read_csv_auto('{path}') GROUP BY 1"
        ).df()
    out.update(seconds=time.perf_counter() - started, mib=peak.high, hours=len(hours), gets=1)


def meterflow(endpoint: str, minutes: int, out: dict) -> None:
    from prefect_aws import AwsCredentials

    from connectors import connector_for
    from meterflow.collection.collect import collect_meter
    from meterflow.common.storage import LocalStorage
    from meterflow.common.timeutil import HourWindow
    from meterflow.configuration.participant_xml import load_participant

    participant = load_participant(CONFIG.encode())
    meter = participant.meter("s3-main")
    client = AwsCredentials(
        aws_access_key_id="AKIABENCH",
        aws_secret_access_key="bench",
        region_name="us-east-1",
        aws_client_parameters={"endpoint_url": endpoint},
    ).get_s3_client()
    gets: list[str] = []
    client.meta.events.register("before-send.s3.GetObject", lambda **_: gets.append("GET"))
    hours = -(-minutes // 60)
    window = HourWindow(START, START + timedelta(hours=hours))
    now = window.end
    with tempfile.TemporaryDirectory() as folder:
        storage = LocalStorage(Path(folder), participant.id)
        # Warm up on a one-hour export: what the code imports on first use is not the object's.
        warm = participant.meter("s3-warm")
        client.put_object(Bucket=BUCKET, Key="warm/w.csv", Body=export(0, minutes=60)[0])
        warm_window = HourWindow(START, START + timedelta(hours=1))
        warm_connector = connector_for(warm, participant.id, s3_client=client)
        collect_meter(storage, participant, warm, warm_connector, warm_window, now=now)
        gets.clear()
        started = time.perf_counter()
        connector = connector_for(meter, participant.id, s3_client=client)
        with Peak() as peak:
            result = collect_meter(storage, participant, meter, connector, window, now=now)
        first = (time.perf_counter() - started, peak.high, len(gets))
        collect_meter(storage, participant, meter, connector, window, now=now)
        rerun = len(gets) - first[2]
        client.put_object(Bucket=BUCKET, Key=KEY, Body=export(1, scale=2.0)[0])
        collect_meter(storage, participant, meter, connector, window, now=now)
        rewrite = len(gets) - first[2] - rerun
    out.update(
        seconds=first[0], mib=first[1], hours=result.hours_new, gets=first[2],
        rerun_gets=rerun, rewrite_gets=rewrite,
    )  # fmt: skip


def isolated(target, *args) -> dict:
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        out = manager.dict()
        process = context.Process(target=target, args=(*args, out))
        process.start()
        process.join()
        if process.exitcode:
            raise SystemExit(f"{target.__name__} failed with exit code {process.exitcode}")
        return dict(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, nargs="+", default=[50, 200])
    args = parser.parse_args()
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log lines

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    runs = []
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="AKIABENCH", aws_secret_access_key="bench",
        )  # fmt: skip
        client.create_bucket(Bucket=BUCKET)
        for megabytes in args.mb:
            body, minutes = export(megabytes)
            client.put_object(Bucket=BUCKET, Key=KEY, Body=body)
            size = len(body) / 1024 / 1024
            del body
            p = isolated(peer, endpoint)
            a = isolated(meterflow, endpoint, minutes)
            runs.append((size, minutes, p, a))
    finally:
        server.stop()
    print(f"{'export':>10}{'rows':>11}{'':>4}{'seconds':>9}{'peak MiB':>10}{'x object':>10}")
    for size, minutes, p, a in runs:
        for name, run in (("p", p), ("a", a)):
            print(
                f"{size:>6.1f} MiB{minutes:>11,}{name:>4}{run['seconds']:>9.1f}"
                f"{run['mib']:>10.1f}{run['mib'] / size:>10.2f}"
            )
        print(
            f"{'':>21}a/p time {a['seconds'] / p['seconds']:.1f}, memory {a['mib'] / p['mib']:.2f}"
        )
        print(
            f"{'':>21}object GETs: first dispatch {a['gets']}, rerun with nothing new "
            f"{a['rerun_gets']}, after rewriting the object {a['rewrite_gets']}"
        )
    if len(runs) > 1:
        (small, _, _, first), (large, _, _, last) = runs[0], runs[-1]
        print(
            f"a's peak grew {last['mib'] / first['mib']:.2f}x for an object "
            f"{large / small:.1f}x as large"
        )


if __name__ == "__main__":
    main()
