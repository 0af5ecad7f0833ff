"""Deterministic local HTTP servers that speak real external APIs, for tests and the demo."""

from emulators.electricitymaps import ElectricityMapsEmulator
from emulators.openmeteo import OpenMeteoEmulator
from emulators.solcast import SolcastEmulator
from emulators.wattwatchers import WattwatchersEmulator

__all__ = [
    "ElectricityMapsEmulator",
    "OpenMeteoEmulator",
    "SolcastEmulator",
    "WattwatchersEmulator",
]
