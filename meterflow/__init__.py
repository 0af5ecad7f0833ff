"""Meterflow domain core: configuration, storage, standardisation, aggregation, warehouse.

Nothing in this package imports Prefect, so it runs bare in tests, benchmarks and notebooks.
"""
