"""Standardisation: source readings to plausible hourly readings with quality and coverage, in
standard units.
"""
