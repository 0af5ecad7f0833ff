"""Prefect block types. Participant XML names blocks; blocks hold the secrets.

The connectors built so far (csv, nem12, push) read the participant's own storage and need no
credentials; API sources (Wattwatchers, Solcast, S3) add their credential blocks here.
"""
