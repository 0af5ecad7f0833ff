"""What a meter's health is measured against: how late its data normally is, and how long it may
say nothing. Apart from `health` (which reads the warehouse), so that the connectors, which give
their defaults, load no warehouse code into a collection worker."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from meterflow.configuration.config import Meter


@dataclass(frozen=True)
class Thresholds:
    latency: timedelta  # how far behind the clock its data normally is
    silent_after: timedelta  # no new data for longer than this: silent

    @classmethod
    def of(cls, meter: Meter, latency: timedelta, silent_after: timedelta) -> Thresholds:
        """The meter's own thresholds where its XML sets them, else its connector's."""
        own = meter.latency_hours, meter.silent_after_hours
        return cls(
            timedelta(hours=own[0]) if own[0] else latency,
            timedelta(hours=own[1]) if own[1] else silent_after,
        )
