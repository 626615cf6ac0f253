"""The journey language: its model, expressions, durations, graph, waits, exits, splits and trigger planning."""
