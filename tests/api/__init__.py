"""Tests of the HTTP API, its webhooks, callbacks and pages."""
