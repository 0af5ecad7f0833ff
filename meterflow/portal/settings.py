"""The portal's settings, from `METERFLOW_PORTAL_*` environment variables (Cloud Run service
variables and secrets in production)."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class PortalSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="METERFLOW_PORTAL_")

    warehouse: str = "data/warehouse.duckdb"  # a DuckDB path or a warehouse block `<slug>/<name>`
    data_root: str = "data"  # participants' local folders (buckets come from storage blocks)
    session_secret: SecretStr  # signs the browser session cookie
    public_url: str = "http://127.0.0.1:8000"  # where people reach the portal (OIDC redirect)
    secure_cookies: bool = False  # True behind HTTPS (production)
    oidc_issuer: str | None = None  # e.g. https://accounts.google.com; None: API tokens only
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    # Where a person's groups come from: a claim of the ID token, or (Google Workspace, whose ID
    # tokens carry none) the Cloud Identity Groups API.
    groups_from: Literal["claim", "cloud-identity"] = "claim"
    groups_claim: str = "groups"  # the ID token claim that lists the person's groups
    cloud_identity_url: str = "https://cloudidentity.googleapis.com"
    group_pattern: str = "meterflow-{participant}@example.org"
    session_hours: float = 8.0
