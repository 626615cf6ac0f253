"""SendGrid: sending (sending.py) and its Event Webhook (callbacks.py); the SDK loads on first use."""
