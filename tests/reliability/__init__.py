"""Reliability suite (issue 7): faults and bad input, each ending in the documented result."""
