"""Measurement: split arms, uplift statistics and the reports built on them."""
