"""Collection in shards: planned meter windows grouped so that one unit of work (a task run
locally, a flow run on a worker in production) covers many meters, never one meter-hour.

A shard reports back only a summary per meter, the span of hours it changed and the key of the
run object holding what it fetched and made, so the memory a dispatch holds is bounded by the
shard size, not by the number of meters; the flow merges the runs into the day files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meterflow.collection.collect import CollectResult, MeterWindow, ShardRun
from meterflow.common.errors import MeterflowError
from meterflow.common.timeutil import HOUR, HourWindow

DEFAULT_SHARD_SIZE = 100


@dataclass
class MeterOutcome:
    """One meter's line in the dispatch summary."""

    participant: str
    meter: str
    hours_new: int = 0
    hours_cached: int = 0
    hours_missing: int = 0
    files_new: int = 0
    status: str = "ok"
    why: str = ""
    error_type: str = ""  # the exception's type when it failed, e.g. SourceAuthError
    start: str = ""  # the meter's window, ISO UTC (empty for a participant or shard line)
    end: str = ""

    @classmethod
    def of(cls, result: CollectResult) -> MeterOutcome:
        window = {"start": result.window.start.isoformat(), "end": result.window.end.isoformat()}
        if result.error is not None:
            failed = cls.failed(result.participant, result.meter, result.error)
            failed.start, failed.end = window["start"], window["end"]
            # Nothing came: every hour of its window that was not complete before is missing.
            failed.hours_cached = result.hours_cached
            failed.hours_missing = len(result.window.hours()) - result.hours_cached
            return failed
        outcome = cls(
            result.participant,
            result.meter,
            hours_new=result.hours_new,
            hours_cached=result.hours_cached,
            hours_missing=result.hours_missing,
            files_new=result.payloads_new,
            **window,
        )
        if result.rejected:
            # The row names participant and meter already; each reason names its file.
            named = f"{result.participant}/{result.meter}, "
            reasons = [r.removeprefix(named) for r in result.rejected]
            outcome.status, outcome.why = "quarantined", "; ".join(reasons)
        if result.deferred:
            outcome.status, outcome.why = "deferred", result.deferred
        return outcome

    @classmethod
    def failed(cls, participant: str, meter: str, error: BaseException) -> MeterOutcome:
        known = isinstance(error, MeterflowError)
        why = str(error) if known else f"{type(error).__name__}: {error}"
        return cls(participant, meter, status="failed", why=why, error_type=type(error).__name__)


def failures(outcomes: list[MeterOutcome]) -> list[str]:
    """`participant/meter: why` for every failed outcome."""
    return [f"{o.participant}/{o.meter}: {o.why}" for o in outcomes if o.status == "failed"]


@dataclass
class ShardReport:
    """What collecting some meters did, and the span of hours it changed."""

    outcomes: list[MeterOutcome] = field(default_factory=list)
    changed: HourWindow | None = None
    runs: list[str] = field(default_factory=list)  # run objects to merge

    @classmethod
    def of(cls, run: ShardRun) -> ShardReport:
        """What a shard's collection sends back: an outcome per meter, the span it changed and
        its run object's key."""
        report = cls(runs=[run.run_key] if run.run_key else [])
        for result in run.results:
            report.add(result)
        return report

    def add(self, result: CollectResult) -> None:
        self.outcomes.append(MeterOutcome.of(result))
        if result.hours_new:
            hours = result.changed["hour_utc"]
            self.widen(HourWindow(hours.min().to_pydatetime(), hours.max().to_pydatetime() + HOUR))

    def widen(self, window: HourWindow | None) -> None:
        if window is None:
            return
        if self.changed is None:
            self.changed = window
        else:
            start = min(self.changed.start, window.start)
            self.changed = HourWindow(start, max(self.changed.end, window.end))

    def merge(self, other: ShardReport) -> None:
        self.outcomes.extend(other.outcomes)
        self.widen(other.changed)
        self.runs.extend(other.runs)


# A shard spans at most `size` meters x a week of hours: what a shard holds in memory grows with
# the span it reads, so a month's backfill goes in shards of a quarter of the meters (a 100-meter
# shard of 30 days peaked at 535 MiB RSS, of 7 days at about 150 MiB above the process' own).
SHARD_SPAN_HOURS = 7 * 24


def shard(planned: list[MeterWindow], size: int) -> list[list[MeterWindow]]:
    """Consecutive groups of at most `size` meter windows and `size` x SHARD_SPAN_HOURS hours of
    window (a meter's window is never split: its readings are standardised together)."""
    if size < 1:
        raise MeterflowError(f"shard size must be at least 1, got {size}")
    budget = size * SHARD_SPAN_HOURS
    shards: list[list[MeterWindow]] = []
    used = 0
    for mw in planned:
        span = (mw.window.end - mw.window.start) // HOUR
        if not shards or len(shards[-1]) == size or used + span > budget:
            shards.append([])
            used = 0
        shards[-1].append(mw)
        used += span
    return shards


def shard_label(index: int, count: int, meters: list[MeterWindow]) -> str:
    """`shard-2-of-5 (meter-a..meter-z)`: where a shard sits and which meters it holds."""
    return f"shard-{index + 1}-of-{count} ({meters[0].meter_id}..{meters[-1].meter_id})"


def shard_windows(meters: list[MeterWindow]) -> dict[str, list[str]]:
    """A shard as deployment parameters: meter id -> [start, end] in ISO UTC."""
    return {m.meter_id: [m.window.start.isoformat(), m.window.end.isoformat()] for m in meters}


def windows_of(windows: dict[str, list[str]]) -> list[MeterWindow]:
    """The shard back from its deployment parameters."""
    planned = []
    for meter_id, (start, end) in windows.items():
        window = HourWindow.parse(start, end)
        planned.append(MeterWindow(meter_id, window, len(window.hours())))
    return planned
