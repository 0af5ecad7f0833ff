"""Aggregation: property-hours per data type with their context (local calendar, holidays, office
hours, emission factors).
"""
