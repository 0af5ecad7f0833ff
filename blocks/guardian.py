"""The Guardian policy block an MRV job names: endpoint, account, policy and the device's key."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from meterflow.common.errors import MeterflowError
from meterflow.mrv.document import Policy


class GuardianPolicy(Block):
    """Where MRV records go: a Guardian instance, the account that submits, the policy (id and
    tag) and its schema, and the device's Ed25519 key that signs each document."""

    _block_type_name = "Guardian Policy"
    base_url: str = Field(description="Guardian base URL, e.g. https://guardian.example.org")
    username: str
    password: SecretStr
    owner_did: str = Field(description="DID of the installer that owns the documents")
    policy_id: str
    policy_tag: str = Field(description="The policy's tag, e.g. Tag_1758892814008")
    account_id: str = Field(description="Hedera account id, e.g. 0.0.4512345")
    device_did: str
    device_key: SecretStr = Field(description="base64 of the device's 32-byte Ed25519 key")
    schema_context: str = Field(description="The MRV schema's context URL")
    schema_type: str = Field(description="The MRV schema's id")
    readback_block: str | None = Field(
        default=None,
        description="Tag of a policy block that lists received documents, to confirm delivery",
    )

    def policy(self) -> Policy:
        return Policy(
            base_url=self.base_url,
            username=self.username,
            password=self.password.get_secret_value(),
            owner_did=self.owner_did,
            policy_id=self.policy_id,
            policy_tag=self.policy_tag,
            account_id=self.account_id,
            device_did=self.device_did,
            device_key=self.device_key.get_secret_value(),
            schema_context=self.schema_context,
            schema_type=self.schema_type,
            readback_block=self.readback_block,
        )


def load_policy(name: str) -> Policy:
    try:
        return GuardianPolicy.load(name).policy()
    except (ValueError, KeyError) as exc:
        raise MeterflowError(
            f"cannot load block guardian-policy/{name}: {exc}. Create it in the Prefect UI "
            f"or with GuardianPolicy(...).save({name!r})"
        ) from None
