"""Journeys, templates and scenarios checked against what the shop declares (settings, database models)."""
