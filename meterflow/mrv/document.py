"""The verifiable-credential document a Guardian policy receives for an MRV record.

Shaped like Guardian's mrv-sender output (W3C VC, subject fields as the Tymlez MRV schema) and
signed with the device's Ed25519 key as `Ed25519Signature2018` with a detached JWS. What is signed
is the document without its proof as canonical JSON (sorted keys, no spaces), not the RDF
(URDNA2015) form Guardian's own verifier uses: `verify_signature` here checks it, Guardian will
store the document but may mark the signature INVALID (it does not reject on that).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from meterflow.common.errors import MeterflowError
from meterflow.mrv.store import Record

JWS_HEADER = {"alg": "EdDSA", "b64": False, "crit": ["b64"]}


@dataclass(frozen=True)
class Policy:
    """Where and as whom records are submitted (from the participant's Guardian block)."""

    base_url: str
    username: str
    password: str
    owner_did: str
    policy_id: str
    policy_tag: str
    account_id: str
    device_did: str
    device_key: str  # base64 of the 32-byte Ed25519 private key
    schema_context: str
    schema_type: str
    readback_block: str | None = None  # a policy block listing received documents, if any


def document_id(record: Record) -> str:
    """Deterministic, so that a read-back can find exactly this record and revision."""
    return f"urn:meterflow:mrv:{record.record_id}:{record.revision}"


def build(record: Record, policy: Policy, issued: datetime) -> dict:
    """The unsigned VC: energy kWh, carbon t CO2-e, interval start and duration (ms)."""
    x = record.extraction
    subject = {
        "@context": [policy.schema_context],
        "type": policy.schema_type,
        "mrvEnergyAmount": round(x.energy_kwh, 6),
        "mrvCarbonAmount": round(x.carbon_t or 0.0, 9),
        "mrvTimestamp": record.period.start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "mrvDuration": int(record.period.duration.total_seconds() * 1000),
        "policyId": policy.policy_id,
        "accountId": policy.account_id,
        "mrvRecordId": record.record_id,
        "mrvRevision": record.revision,
        "mrvDeviceId": record.device_id,
    }
    return {
        "id": document_id(record),
        "type": ["VerifiableCredential"],
        "issuer": policy.device_did,
        "issuanceDate": issued.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "@context": ["https://www.w3.org/2018/credentials/v1"],
        "credentialSubject": [subject],
    }


def sign(document: dict, policy: Policy, created: datetime) -> dict:
    key = _private_key(policy.device_key)
    header = _b64(json.dumps(JWS_HEADER, separators=(",", ":")).encode())
    signature = key.sign(header.encode() + b"." + _canonical(document))
    return {
        **document,
        "proof": {
            "type": "Ed25519Signature2018",
            "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "verificationMethod": f"{policy.device_did}#did-root-key",
            "proofPurpose": "assertionMethod",
            "jws": f"{header}..{_b64(signature)}",
        },
    }


def verify_signature(document: dict, public_key: Ed25519PublicKey) -> bool:
    """True if the proof signs exactly this document (without its proof)."""
    body = {k: v for k, v in document.items() if k != "proof"}
    header, _, signature = document["proof"]["jws"].partition("..")
    try:
        public_key.verify(_unb64(signature), header.encode() + b"." + _canonical(body))
    except InvalidSignature:
        return False
    return True


def public_key(device_key: str) -> Ed25519PublicKey:
    return _private_key(device_key).public_key()


def _private_key(device_key: str) -> Ed25519PrivateKey:
    try:
        return Ed25519PrivateKey.from_private_bytes(base64.b64decode(device_key))
    except ValueError:
        raise MeterflowError(
            "the Guardian block's device key is not a base64 Ed25519 key"
        ) from None


def _canonical(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
