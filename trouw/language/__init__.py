"""The journey language and the rules every layer shares: pure, no I/O (sandbox pass-through)."""
