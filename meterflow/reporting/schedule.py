"""When a participant's latest report is rendered again: reports are documents of days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

# Reports are documents of days: an hourly dispatch renders each at most once a day.
REPORT_EVERY_HOURS = 24.0


def latest_report(reports_dir: Path, participant_id: str) -> Path:
    return reports_dir / f"{participant_id}-latest.html"


def latest_report_due(
    reports_dir: Path, participant_id: str, now: datetime, every: timedelta
) -> bool:
    """Whether the participant's latest report is missing or at least `every` old. The report
    is a document of days: rendering it on every hourly dispatch would cost more than the
    collection it reports on (half a second per participant)."""
    out = latest_report(reports_dir, participant_id)
    if not out.exists():
        return True
    return now - datetime.fromtimestamp(out.stat().st_mtime, UTC) >= every
