"""Verification: the rules an MRV record must pass before it may be submitted."""

from __future__ import annotations

from meterflow.configuration.config import MrvJob
from meterflow.mrv.extract import Extraction


def verify(extraction: Extraction, job: MrvJob, overlapping_submitted: list[str]) -> list[str]:
    """Every reason the record cannot be submitted; empty means verified.

    - coverage: complete hours / hours in the interval >= `mrv_minCoverage` (CalTRACK: 90 %)
    - estimated hours / complete hours <= `mrv_maxEstimated`
    - energy within physical bounds: not negative, at most rated kW x hours
    - an emission factor for the interval's date and region
    - no overlap with a record already submitted for the same device
    """
    x, reasons = extraction, []
    if x.coverage < job.min_coverage:
        reasons.append(
            f"coverage {x.coverage:.1%} is below {job.min_coverage:.0%} "
            f"({x.hours_complete} of {x.hours_expected} hours complete)"
        )
    estimated = x.hours_estimated / x.hours_complete if x.hours_complete else 0.0
    if estimated > job.max_estimated:
        reasons.append(
            f"{estimated:.1%} of hours are estimated, above {job.max_estimated:.0%} "
            f"({x.hours_estimated} hours)"
        )
    if x.energy_kwh < 0:
        reasons.append(f"energy {x.energy_kwh:.3f} kWh is negative")
    if job.rated_kw is not None and x.energy_kwh > job.rated_kw * x.hours_expected:
        reasons.append(
            f"energy {x.energy_kwh:.3f} kWh exceeds rated {job.rated_kw:g} kW x "
            f"{x.hours_expected} h = {job.rated_kw * x.hours_expected:.3f} kWh"
        )
    if x.carbon_t is None:
        reasons.append("no emission factor for the property's region on the interval's date")
    reasons.extend(f"overlaps submitted record {other}" for other in overlapping_submitted)
    return reasons
