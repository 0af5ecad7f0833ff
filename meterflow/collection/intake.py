"""Intake of fetched payloads: refuse, parse, keep only new records, or quarantine.

Everything wrong with a payload becomes a `SourceDataError` here, whatever raised it, so that
one bad file or response never stops the other payloads of its meter: it is archived as
rejected and copied to `quarantine/` beside a reason file, and an inbox entry leaves the inbox.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any, Protocol

from meterflow.collection.catalog import Catalog
from meterflow.collection.rawlog import Payload, RunReader, safe_name
from meterflow.common.errors import SourceDataError
from meterflow.common.storage import Storage
from meterflow.configuration.config import Meter
from meterflow.standardisation.readings import SourceReadings


class RecordConnector(Protocol):
    """An API connector whose payloads are lists of records: the raw log keeps each record once,
    however the requests that returned it were paged."""

    def split_records(self, data: bytes) -> tuple[dict, list[Any]]:
        """The payload's envelope (without its records) and its records."""

    def join_records(self, envelope: dict, records: list[Any]) -> bytes:
        """A payload of the envelope and these records (inverse of split_records)."""

    def record_key(self, record: Any) -> str:
        """What a record is about (e.g. its interval), whatever its values."""


def new_records(
    reader: RunReader,
    catalog: Catalog,
    connector,
    payload: Payload,
    readings: SourceReadings,
    meter: Meter,
) -> tuple[Payload, SourceReadings, int | None] | None:
    """The payload cut down to the source records the raw log does not hold yet (a record is
    new if no archived record has its key or the latest archived one differs), its readings,
    and how many records the source returned; None if the log holds every one already. A
    payload of a connector without records is kept whole."""
    if not hasattr(connector, "split_records"):
        return payload, readings, None
    envelope, records = connector.split_records(payload.data)
    span = readings.span()
    archived = catalog.payloads_of(meter.id, *span) if span else catalog.payloads_of(meter.id)[:0]
    latest: dict[str, str] = {}
    for row in archived.itertuples():  # oldest first: the last one stands
        for record in connector.split_records(reader.data(row.run_key, row.row))[1]:
            latest[connector.record_key(record)] = _canonical(record)
    fresh = [r for r in records if latest.get(connector.record_key(r)) != _canonical(r)]
    if records and not fresh:
        return None
    if len(fresh) < len(records):
        payload = replace(payload, data=connector.join_records(envelope, fresh))
        readings = read_payload(connector, payload, meter, reader.storage)
    return payload, readings, len(records)


def read_payload(connector, payload: Payload, meter: Meter, storage: Storage) -> SourceReadings:
    """Parse a payload; a refusal, or any failure no parser rule foresaw, is a SourceDataError.
    One streamed into the raw log is parsed from there, as a stream where the connector can."""
    if payload.refused:
        raise SourceDataError(payload.refused)
    try:
        if payload.stored and hasattr(connector, "parse_stream"):
            with payload.open(storage) as stream:
                return connector.parse_stream(stream, payload.name, meter)
        return connector.parse(payload.read(storage), payload.name, meter)
    except SourceDataError:
        raise
    except Exception as exc:
        raise SourceDataError(f"cannot be read: {type(exc).__name__}: {exc}") from None


def quarantine_key(meter_id: str, payload: Payload) -> str:
    """A key that is always valid, one per name and content (the original name is in the
    reason file)."""
    content = payload.sha.encode() if payload.stored else payload.data
    digest = hashlib.sha256(payload.source.encode() + b"\0" + content).hexdigest()[:16]
    return f"quarantine/{meter_id}/{digest}_{safe_name(payload.name)}"


def quarantine(storage: Storage, meter_id: str, payload: Payload, reason: str) -> str:
    """Keep rejected input beside a reason file, then take it out of the inbox."""
    key = quarantine_key(meter_id, payload)
    storage.write_stream(key, payload.chunks(storage))
    reason_file = {"source": payload.source, "name": payload.name, "reason": reason}
    storage.write(key + ".reason.json", json.dumps(reason_file, indent=2).encode())
    consume(storage, payload)
    return key


def consume(storage: Storage, payload: Payload) -> None:
    """Take an inbox entry out once its payload is archived or quarantined."""
    if payload.consumed:
        storage.remove_entry(payload.consumed)


def _canonical(record: Any) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))
