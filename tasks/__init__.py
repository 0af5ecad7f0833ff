"""Prefect tasks: thin wrappers over the domain core that add run names, retries and logging.

Every task is `cache_policy=NO_CACHE`: the core is idempotent at meter-hour granularity (the
ledger decides what a rerun redoes), results are not persisted, so Prefect's input hashing would
only cost time (about 14 ms per 1,000 meters a task run is given, on every task run).
"""
