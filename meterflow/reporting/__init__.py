"""Reports: a participant's HTML report from the warehouse."""
