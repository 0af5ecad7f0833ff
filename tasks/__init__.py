"""Prefect tasks: thin wrappers over the domain core that add run names, retries and logging."""
