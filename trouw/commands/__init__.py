"""The `trouw` command, the simulator and the demo."""
