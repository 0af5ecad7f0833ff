"""Submission exactly once: reconcile first, then decide.

`submitting` is stored (with the document id) before the document is sent, so a crash between
Guardian accepting a document and us storing `submitted` leaves a record in `submitting`. The next
run asks Guardian's read-back whether it has that document id: listed -> `submitted`; not listed
by a read-back that is trusted -> send again; anything else -> `needs_review`. A document is never
sent twice on a guess.

A read-back is trusted to say "not there" only when the same answer lists at least one document
it listed before for this participant (kept per Guardian URL, policy and block in
`mrv_confirmation`). A wrong tag, a block that lists nothing or an answer of another shape would
otherwise report every document missing, and a document Guardian holds would be sent again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from meterflow.common.http import SourceRejected, SourceUnavailable
from meterflow.mrv.document import build, document_id, sign
from meterflow.mrv.guardian import GuardianClient, Unreadable
from meterflow.mrv.store import MrvStore, Record

ATTEMPTS = 4
BACKOFF_S = 1.0


@dataclass(frozen=True)
class Seen:
    """What the read-back says of one document: `found`; `absent` (a trusted listing without it,
    so sending it again is safe); `unknown` (no read-back, or one that proves nothing), and why."""

    verdict: Literal["found", "absent", "unknown"]
    why: str = ""


def look(store: MrvStore, client: GuardianClient, record: Record, doc_id: str) -> Seen:
    """Ask the read-back for the document, and whether its "not there" can be believed."""
    listing = client.read_back()
    if listing is None:
        return Seen("unknown", "the policy offers no read-back")
    if isinstance(listing, Unreadable):
        return Seen("unknown", f"the read-back cannot be trusted: {listing.why}")
    if doc_id in listing.document_ids:
        return Seen("found")
    before = store.confirmed(record.participant_id, client.readback)
    if before & listing.document_ids:
        return Seen("absent", f"the read-back lists {len(listing.document_ids)} documents")
    listed = f"it lists {len(listing.document_ids)} documents"
    if not before:
        why = f"{listed}, and it has never listed one of ours"
    else:
        why = f"{listed}, none of the {len(before)} of ours it listed before"
    return Seen("unknown", f"the read-back cannot be trusted: {why}")


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
    try:
        client.sign_in()  # Guardian down: the record stays `verified`, nothing was sent
    except SourceRejected as exc:
        return store.move(record, "failed", f"Guardian refused the sign-in: {exc.reason}")
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
            seen = look(store, client, record, doc_id)
            if seen.verdict == "found":
                return _submitted(
                    store, client, record, f"confirmed by read-back after: {exc.reason}"
                )
            if seen.verdict == "unknown" and exc.status is None:
                return store.move(
                    record,
                    "needs_review",
                    f"{exc.reason}; Guardian may have stored it and {seen.why}, so it is not "
                    "sent again",
                )
            if attempt == ATTEMPTS:
                return store.move(record, "failed", f"not delivered after {attempt} tries: {exc}")
            sleep(BACKOFF_S * 2 ** (attempt - 1))
            continue
        return _confirm(store, client, record, doc_id)
    raise AssertionError("unreachable")


def reconcile(store: MrvStore, client: GuardianClient, record: Record) -> Record:
    """A record left in `submitting` by an interrupted run: find out before doing anything."""
    seen = look(store, client, record, record.document_id)
    if seen.verdict == "found":
        return _submitted(
            store, client, record, "confirmed by read-back after an interrupted submission"
        )
    if seen.verdict == "absent":
        return store.move(
            record,
            "verified",
            f"not at Guardian after an interrupted submission ({seen.why}, documents of ours "
            "among them): send again",
        )
    return store.move(
        record,
        "needs_review",
        f"interrupted while submitting and {seen.why}: whether Guardian has it cannot be "
        "decided, so it is not sent again",
    )


def _confirm(store: MrvStore, client: GuardianClient, record: Record, doc_id: str) -> Record:
    if client.readback is None:
        return store.move(
            record,
            "submitted",
            "Guardian answered true; the policy offers no read-back, so delivery is unconfirmed",
            confirmation="unconfirmed (no read-back)",
        )
    seen = look(store, client, record, doc_id)
    if seen.verdict == "found":
        return _submitted(
            store, client, record, "Guardian answered true and the read-back shows it"
        )
    if seen.verdict == "absent":
        why = "the document is not in the policy (wrong policy tag?)"
    else:
        why = f"{seen.why}, so delivery is unconfirmed"
    return store.move(record, "needs_review", f"Guardian answered true but {why}; not sent again")


def _submitted(store: MrvStore, client: GuardianClient, record: Record, reason: str) -> Record:
    found = (
        f"read-back {client.readback.block} at {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} "
        f"found {record.document_id}"
    )
    return store.move(record, "submitted", reason, confirmed_by=client.readback, confirmation=found)
