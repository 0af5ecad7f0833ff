"""Submission exactly once: reconcile first, then decide.

`submitting` is stored (with the document id) before the document is sent, so a crash between
Guardian accepting a document and us storing `submitted` leaves a record in `submitting`. The next
run asks Guardian's read-back whether it has that document id: yes -> `submitted`, no -> send
again, no read-back -> `needs_review`. A document is never sent twice on a guess.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from meterflow.http import SourceRejected, SourceUnavailable
from meterflow.mrv.document import build, document_id, sign
from meterflow.mrv.guardian import GuardianClient
from meterflow.mrv.store import MrvStore, Record

ATTEMPTS = 4
BACKOFF_S = 1.0


def submit(
    store: MrvStore,
    client: GuardianClient,
    record: Record,
    sleep: Callable[[float], None] = time.sleep,
) -> Record:
    """Take a `verified` (or interrupted `submitting`) record to `submitted` at most once."""
    if record.status == "submitting":
        record = reconcile(store, client, record)
    if record.status != "verified":
        return record
    policy = client.policy
    now = datetime.now(UTC)
    doc_id = document_id(record)
    document = sign(build(record, policy, now), policy, now)
    record = store.move(
        record, "submitting", f"sending {doc_id} to policy {policy.policy_tag}", document_id=doc_id
    )
    for attempt in range(1, ATTEMPTS + 1):
        try:
            client.send(document)
        except SourceRejected as exc:
            return store.move(record, "failed", f"Guardian refused it: {exc.reason}")
        except SourceUnavailable as exc:
            # A timeout can come after Guardian stored the document: look before sending again.
            seen = client.delivered(doc_id)
            if seen:
                return _submitted(store, record, f"confirmed by read-back after: {exc.reason}")
            if seen is None and exc.status is None:
                return store.move(
                    record,
                    "needs_review",
                    f"{exc.reason}; Guardian may have stored it and the policy offers no "
                    "read-back, so it is not sent again",
                )
            if attempt == ATTEMPTS:
                return store.move(record, "failed", f"not delivered after {attempt} tries: {exc}")
            sleep(BACKOFF_S * 2 ** (attempt - 1))
            continue
        return _confirm(store, client, record, doc_id)
    raise AssertionError("unreachable")


def reconcile(store: MrvStore, client: GuardianClient, record: Record) -> Record:
    """A record left in `submitting` by an interrupted run: find out before doing anything."""
    seen = client.delivered(record.document_id)
    if seen:
        return _submitted(store, record, "confirmed by read-back after an interrupted submission")
    if seen is False:
        return store.move(
            record, "verified", "not at Guardian after an interrupted submission: send again"
        )
    return store.move(
        record,
        "needs_review",
        "interrupted while submitting and the policy offers no read-back: whether Guardian "
        "has it cannot be decided",
    )


def _confirm(store: MrvStore, client: GuardianClient, record: Record, doc_id: str) -> Record:
    seen = client.delivered(doc_id)
    if seen is None:
        return store.move(
            record,
            "submitted",
            "Guardian answered true; the policy offers no read-back, so delivery is unconfirmed",
            confirmation="unconfirmed (no read-back)",
        )
    if seen:
        return _submitted(store, record, "Guardian answered true and the read-back shows it")
    return store.move(
        record,
        "needs_review",
        "Guardian answered true but the document is not in the policy (wrong policy tag?); "
        "not sent again",
    )


def _submitted(store: MrvStore, record: Record, reason: str) -> Record:
    found = f"read-back at {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} found {record.document_id}"
    return store.move(record, "submitted", reason, confirmation=found)
