"""`s3`: meter files in an S3 bucket (and prefix), read with the csv or nem12 parser.

Credentials come from a prefect-aws `AwsCredentials` block (resolved by the task layer into a
boto3 client). Objects modified since a day before the window starts are listed; one whose size,
ETag and LastModified the catalog already holds from an archived run is not downloaded again
(a dispatch with nothing new makes LIST calls only), and the raw log's content hash keeps a file
that was rewritten with the same bytes from being archived twice. An object larger than
rawlog.LARGE is streamed into the raw log as it downloads and parsed from there in parts, so a
large export is never held whole in memory.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, BinaryIO, ClassVar

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from connectors.csv import parse_csv, parse_csv_stream
from connectors.nem12 import parse_nem12, parse_nem12_stream
from meterflow.collection import rawlog
from meterflow.collection.rawlog import Payload
from meterflow.common.http import Caller, SourceRejected, SourceUnavailable
from meterflow.common.storage import Storage
from meterflow.common.timeutil import HourWindow
from meterflow.configuration.config import CsvFormat, Meter
from meterflow.standardisation.readings import SourceReadings

LOOKBACK = timedelta(days=1)


class S3Connector:
    type: ClassVar[str] = "s3"
    version: ClassVar[str] = "1"
    polls: ClassVar[bool] = True
    settle: ClassVar[timedelta] = timedelta(0)
    # Meter health defaults (exports arrive about daily): data this far behind is
    # late, this long without new data silent (an alert); a meter's XML may set its own.
    latency: ClassVar[timedelta] = timedelta(days=1)
    silent_after: ClassVar[timedelta] = timedelta(days=3)

    def __init__(self, client: Any, caller: Caller):
        self.client, self.caller = client, caller

    def fetch(
        self,
        storage: Storage,
        meter: Meter,
        window: HourWindow,
        now: datetime,
        seen: dict[str, dict] | None = None,
    ) -> list[Payload]:
        settings = meter.connector
        since = window.start - LOOKBACK
        seen = seen or {}
        payloads = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=settings.bucket, Prefix=settings.prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    if item["LastModified"] < since or item["Key"].endswith("/"):
                        continue
                    source = f"s3://{settings.bucket}/{item['Key']}"
                    version = {"size": item["Size"], "version": _version(item)}
                    known = seen.get(source, {})
                    if {k: known.get(k) for k in version} == version:
                        continue  # archived as it is now: no GET
                    body = self.client.get_object(Bucket=settings.bucket, Key=item["Key"])["Body"]
                    name = item["Key"].rsplit("/", 1)[-1]
                    if item["Size"] > rawlog.LARGE:
                        stored = rawlog.archive_stream(storage, body)
                        payloads.append(Payload(name, b"", source, seen=version, stored=stored))
                    else:
                        payloads.append(Payload(name, body.read(), source, seen=version))
        except ClientError as exc:
            error = exc.response.get("Error", {})
            where = f"s3://{settings.bucket}/{settings.prefix}"
            reason = f"{where}: {error.get('Code')} {error.get('Message', '')}".strip()
            raise SourceRejected(self.caller, reason) from None
        except (EndpointConnectionError, BotoCoreError) as exc:
            raise SourceUnavailable(
                self.caller, f"s3://{settings.bucket}: {type(exc).__name__}"
            ) from None
        return payloads

    def parse(self, data: bytes, name: str, meter: Meter) -> SourceReadings:
        fmt = meter.connector.format
        if isinstance(fmt, CsvFormat):
            return parse_csv(data, fmt)
        return parse_nem12(data, fmt.nmi, fmt.suffix)

    def parse_stream(self, stream: BinaryIO, name: str, meter: Meter) -> SourceReadings:
        fmt = meter.connector.format
        if isinstance(fmt, CsvFormat):
            return parse_csv_stream(stream, fmt)
        return parse_nem12_stream(stream, fmt.nmi, fmt.suffix)


def _version(item: dict) -> str:
    """What changes when an object is rewritten: its ETag and LastModified."""
    return f"{item['ETag'].strip(chr(34))}@{item['LastModified'].isoformat()}"
