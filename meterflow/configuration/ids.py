"""Identifiers and storage keys: strict patterns so that no id or key can reach another tenant."""

from __future__ import annotations

import re

from meterflow.common.errors import InvalidIdentifier

IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_KEY_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.=+-]{0,199}")


def check_identifier(value: str, kind: str = "identifier") -> str:
    """Return `value` if it is a valid participant, property or meter id, else raise."""
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise InvalidIdentifier(
            f"invalid {kind} {value!r}: use 1-64 letters, digits, '-' or '_', starting with a "
            "letter or digit"
        )
    return value


def is_key(key: str) -> bool:
    """Whether `key` is a relative storage key with safe segments (see check_key)."""
    if not isinstance(key, str):
        return False
    segments = key.split("/")
    if key.endswith("/"):
        segments = segments[:-1]
    return bool(segments) and all(_KEY_SEGMENT.fullmatch(segment) for segment in segments)


def check_key(key: str) -> str:
    """Return `key` if it is a relative storage key with safe segments, else raise.

    Segments may not be empty, '.', '..' or start with a dot, so a key can never climb out of
    the participant's root however a backend joins it.
    """
    if not is_key(key):
        raise InvalidIdentifier(
            f"invalid storage key {key!r}: keys are relative, '/'-separated, and each part uses "
            "letters, digits, '-', '_', '.', '=' or '+' and does not start with a dot"
        )
    return key
