"""The running stack: the worker, the relay, the runtime and the Temporal plumbing."""
