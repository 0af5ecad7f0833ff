"""Connectors fed by files that a meter's owner drops into their own storage."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

from meterflow.config import Meter
from meterflow.rawlog import Payload
from meterflow.storage import Storage
from meterflow.timeutil import HourWindow


class FileConnector:
    """Looks at every file under the meter's folder on each dispatch; the raw log's content
    hash tells which ones are new. Export folders are the participant's own and are left as
    they are; an inbox is consumed (each file leaves once archived or quarantined)."""

    version: ClassVar[str] = "1"
    polls: ClassVar[bool] = True
    settle: ClassVar[timedelta] = timedelta(0)
    consume: ClassVar[bool] = False

    def folder(self, meter: Meter) -> str:
        return meter.connector.path

    def fetch(
        self, storage: Storage, meter: Meter, window: HourWindow, now: datetime
    ) -> list[Payload]:
        return [
            Payload(
                name=key.rsplit("/", 1)[-1],
                data=storage.read(key),
                source=f"{storage.participant_id}:{key}",
                consumed_key=key if self.consume else None,
            )
            for key in storage.list(self.folder(meter))
        ]
