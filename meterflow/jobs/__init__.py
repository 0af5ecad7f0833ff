"""Meter jobs (etl, mrv) and their tasks, meter health and alert incidents (docs/jobs.md)."""
