"""MRV: records per meter and interval, extracted from the warehouse, verified, and submitted to a
Hedera Guardian policy exactly once (no Prefect here)."""
