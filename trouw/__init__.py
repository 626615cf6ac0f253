"""Trouw: journey orchestrator for retailers on Temporal."""
