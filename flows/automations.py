"""Prefect automations for what only Prefect can see: the dispatcher itself crashing, or not
finishing at all (`meterflow alerts install`).

Meter and participant alerts are raised by the dispatch (tasks/jobs.py): only it knows a meter's
data, thresholds and open incidents, so it sends one message per incident. When the dispatch
does not run to the end (its worker died, its infrastructure crashed, the schedule stopped), no
code of ours runs to say so; Prefect's server does: a reactive automation on a crashed dispatch
run and a proactive one when no dispatch run has finished for a while, both sending through a
notification block.
"""

from __future__ import annotations

from datetime import timedelta

from prefect.automations import Automation, EventTrigger, Posture, SendNotification
from prefect.blocks.core import Block

from meterflow.common.errors import MeterflowError

# The dispatch flow's runs, as the related resource of their state-change events.
DISPATCH_FLOW = {"prefect.resource.role": "flow", "prefect.resource.name": "dispatch"}
CRASHED = "meterflow: dispatch crashed"
NOT_FINISHING = "meterflow: no dispatch finished"


def platform_automations(block_document_id, quiet_for: timedelta) -> list[Automation]:
    """A crashed dispatch run is told at once; no dispatch run finished (Completed or Failed,
    which the dispatch's own alerts explain) within `quiet_for` is told once per such span."""
    crashed = Automation(
        name=CRASHED,
        description="A dispatch run crashed or timed out: its infrastructure, not a meter.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Crashed", "prefect.flow-run.TimedOut"},
            match_related=DISPATCH_FLOW,
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            SendNotification(
                block_document_id=block_document_id,
                subject="[meterflow] dispatch {{ flow_run.name }} {{ flow_run.state.name }}",
                body="Dispatch run {{ flow_run.name }} ended {{ flow_run.state.name }}: "
                "{{ flow_run.state.message }}. Its meters are collected again by the next run.",
            )
        ],
    )
    quiet = Automation(
        name=NOT_FINISHING,
        description=f"No dispatch run finished for {quiet_for}: is its schedule or pool down?",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Completed", "prefect.flow-run.Failed"},
            match_related=DISPATCH_FLOW,
            posture=Posture.Proactive,
            threshold=1,
            within=quiet_for,
        ),
        actions=[
            SendNotification(
                block_document_id=block_document_id,
                subject="[meterflow] no dispatch finished",
                body=f"No dispatch run finished in {quiet_for}: check its deployment's "
                "schedule and work pool in the Prefect UI.",
            )
        ],
    )
    return [crashed, quiet]


def install(notify: str, quiet_for: timedelta) -> list[Automation]:
    """Create (or replace, by name) the platform automations, sending through the block
    `notify` (`type-slug/name`)."""
    try:
        block = Block.load(notify)
    except ValueError as exc:
        raise MeterflowError(f"cannot load notification block {notify}: {exc}") from None
    created = []
    for automation in platform_automations(block._block_document_id, quiet_for):
        while True:  # replace every earlier copy, so running it twice leaves one of each
            try:
                Automation.read(name=automation.name).delete()
            except ValueError:
                break
        created.append(automation.create())
    return created
