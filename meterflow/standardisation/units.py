"""Units: each data type has one standard unit; source units are converted at the edge."""

from __future__ import annotations

from typing import Literal

import numpy as np

DataType = Literal[
    "energy",
    "solar",
    "solar_forecast",
    "temperature",
    "outdoor_temperature",
    "occupancy",
    "irradiance",
    "grid_intensity",
]

STANDARD_UNIT: dict[str, str] = {
    "energy": "kWh",
    "solar": "kWh",
    "solar_forecast": "kWh",
    "temperature": "degC",
    "outdoor_temperature": "degC",
    "occupancy": "persons",
    "irradiance": "W/m2",
    "grid_intensity": "gCO2e/kWh",  # emissions per kWh drawn from the grid
}

# Quantity a unit measures, and the factor to its standard unit (temperatures are affine).
_UNITS: dict[str, tuple[str, float]] = {
    "Wh": ("energy", 1e-3),
    "kWh": ("energy", 1.0),
    "MWh": ("energy", 1e3),
    "J": ("energy", 1 / 3.6e6),
    "kJ": ("energy", 1 / 3.6e3),
    "MJ": ("energy", 1 / 3.6),
    "W": ("power", 1e-3),
    "kW": ("power", 1.0),
    "MW": ("power", 1e3),
    "degC": ("temperature", 1.0),
    "degF": ("temperature", 5 / 9),
    "K": ("temperature", 1.0),
    "persons": ("count", 1.0),
    "W/m2": ("irradiance", 1.0),
    "kW/m2": ("irradiance", 1e3),
    "gCO2e/kWh": ("carbon_intensity", 1.0),
    "kgCO2e/kWh": ("carbon_intensity", 1e3),
}
_OFFSET = {"degF": -32.0, "K": -273.15}

# Which source quantities may feed each data type.
ACCEPTED_QUANTITIES: dict[str, set[str]] = {
    "energy": {"energy", "power"},
    "solar": {"energy", "power"},
    "solar_forecast": {"energy", "power"},
    "temperature": {"temperature"},
    "outdoor_temperature": {"temperature"},
    "occupancy": {"count"},
    "irradiance": {"irradiance"},
    "grid_intensity": {"carbon_intensity"},
}


def quantity(unit: str) -> str:
    """The physical quantity a unit measures: energy, power, temperature, count, irradiance or
    carbon_intensity."""
    try:
        return _UNITS[unit][0]
    except KeyError:
        raise ValueError(f"unknown unit {unit!r}; known: {', '.join(_UNITS)}") from None


def standard_unit(unit: str) -> str:
    """The unit that values in `unit` convert to: kWh, kW, degC, persons, W/m2 or gCO2e/kWh."""
    return {
        "energy": "kWh",
        "power": "kW",
        "temperature": "degC",
        "count": "persons",
        "carbon_intensity": "gCO2e/kWh",
    }.get(quantity(unit), "W/m2")


def to_standard(values: np.ndarray, unit: str) -> np.ndarray:
    """Convert values in `unit` to the standard unit of its quantity (kWh, kW, degC, ...)."""
    quantity(unit)
    factor = _UNITS[unit][1]
    return (np.asarray(values, dtype="float64") + _OFFSET.get(unit, 0.0)) * factor
