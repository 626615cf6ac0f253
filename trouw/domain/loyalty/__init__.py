"""Loyalty: the points ledger, levels, vouchers across channels, and the events they derive."""
