"""Finding participants and opening their storage and configuration."""

from __future__ import annotations

from pathlib import Path

from meterflow.common.errors import ConfigError, ConfigIssue
from meterflow.common.storage import CONFIG_KEY, Storage
from meterflow.configuration.config import Participant
from meterflow.configuration.ids import IDENTIFIER
from meterflow.configuration.participant_xml import load_participant


def list_participants(data_root: str | Path) -> list[str]:
    """Ids of the participants under a local data root (folders holding a configuration)."""
    root = Path(data_root)
    if not root.is_dir():
        return []
    return sorted(
        child.name
        for child in root.iterdir()
        if IDENTIFIER.fullmatch(child.name) and (child / CONFIG_KEY).is_file()
    )


def read_configuration(storage: Storage) -> Participant:
    """The participant's validated XML; its id must be the one its storage belongs to."""
    name = f"{storage.participant_id}:{CONFIG_KEY}"
    if not storage.exists(CONFIG_KEY):
        raise ConfigError(name, [ConfigIssue(None, "no configuration file")])
    participant = load_participant(storage.read(CONFIG_KEY), name)
    if participant.id != storage.participant_id:
        raise ConfigError(
            name,
            [
                ConfigIssue(
                    None,
                    f"participant id {participant.id!r} does not match its storage "
                    f"{storage.participant_id!r}",
                )
            ],
        )
    return participant
