"""Exception types raised at the edges, carrying the participant, meter, file or line concerned."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial


class MeterflowError(Exception):
    """Base of every error Meterflow raises on purpose."""


class InvalidIdentifier(MeterflowError):
    """An identifier or storage key that could escape its participant's namespace."""


@dataclass(frozen=True)
class ConfigIssue:
    line: int | None
    message: str

    def format(self, path: str) -> str:
        return f"{path}:{self.line}: {self.message}" if self.line else f"{path}: {self.message}"


class ConfigError(MeterflowError):
    """A participant configuration that fails parsing, the XSD or a semantic check."""

    def __init__(self, path: str, issues: list[ConfigIssue]):
        self.path = path
        self.issues = issues
        super().__init__("\n".join(issue.format(path) for issue in issues))

    def __reduce__(self):  # rebuilt from its fields when it crosses to another process
        return type(self), (self.path, self.issues)


class SourceDataError(MeterflowError):
    """Source data that cannot be read: names the participant, meter, file and line."""

    def __init__(
        self,
        reason: str,
        *,
        participant: str | None = None,
        meter: str | None = None,
        file: str | None = None,
        line: int | None = None,
    ):
        self.reason = reason
        self.participant, self.meter, self.file, self.line = participant, meter, file, line
        where = "/".join(part for part in (participant, meter) if part)
        location = f"{file}:{line}" if file and line else file or ""
        prefix = ", ".join(part for part in (where, location) if part)
        super().__init__(f"{prefix}: {reason}" if prefix else reason)

    def __reduce__(self):
        where = {"participant": self.participant, "meter": self.meter, "file": self.file}
        return partial(type(self), **where, line=self.line), (self.reason,)

    def located(self, *, participant: str, meter: str, file: str) -> SourceDataError:
        """The same error with the context that the pure parser could not know."""
        return SourceDataError(
            self.reason, participant=participant, meter=meter, file=file, line=self.line
        )
