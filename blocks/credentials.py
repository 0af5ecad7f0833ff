"""Credential blocks for the API sources; keys are SecretStr, so the UI and logs mask them."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from meterflow.collection.sources import SourceAccess


class WattwatchersCredentials(Block):
    """A Wattwatchers API v3 key (Bearer `key_...`), scoped by Wattwatchers to its devices."""

    _block_type_name = "Wattwatchers Credentials"
    api_key: SecretStr = Field(description="API key, e.g. key_xxxxxxxx")
    base_url: str = Field(default="https://api-v3.wattwatchers.com.au")

    def access(self, name: str) -> SourceAccess:
        return SourceAccess(block=name, base_url=self.base_url, api_key=self.api_key)


class SolcastCredentials(Block):
    """A Solcast API key and its daily call budget (10 for hobbyist keys), shared by its sites."""

    _block_type_name = "Solcast Credentials"
    api_key: SecretStr = Field(description="Solcast API key")
    base_url: str = Field(default="https://api.solcast.com.au")
    daily_call_limit: int = Field(default=10, ge=1)

    def access(self, name: str) -> SourceAccess:
        return SourceAccess(
            block=name,
            base_url=self.base_url,
            api_key=self.api_key,
            daily_call_limit=self.daily_call_limit,
        )


class ElectricityMapsCredentials(Block):
    """An Electricity Maps API token (sent as the `auth-token` header), for grid carbon
    intensity of the zones its plan covers."""

    _block_type_name = "Electricity Maps Credentials"
    api_key: SecretStr = Field(description="Electricity Maps API token")
    base_url: str = Field(default="https://api.electricitymaps.com")

    def access(self, name: str) -> SourceAccess:
        return SourceAccess(block=name, base_url=self.base_url, api_key=self.api_key)


class OpenMeteoSource(Block):
    """Where to fetch weather (Open-Meteo needs no key; the URL can point at a mirror)."""

    _block_type_name = "Open-Meteo Source"
    base_url: str = Field(default="https://archive-api.open-meteo.com")

    def access(self, name: str) -> SourceAccess:
        return SourceAccess(block=name, base_url=self.base_url)
