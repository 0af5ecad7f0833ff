"""Stored hours: every meter's standardised hours, one file per data type and UTC day."""
