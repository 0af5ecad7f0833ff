"""Prefect flows: dispatch, collect, aggregate, load. Thin orchestration over the domain core."""
