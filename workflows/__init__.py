"""Temporal workflows: deterministic, no I/O; every effect goes through an activity."""
