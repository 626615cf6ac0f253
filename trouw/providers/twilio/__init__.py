"""Twilio: sending SMS (sending.py) and its status and inbound callbacks (callbacks.py)."""
