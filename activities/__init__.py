"""Temporal activities: all I/O of a journey (database, templates, providers) happens here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.custom import CustomActivities
from activities.insight import InsightActivities
from activities.journey_runs import JourneyActivities
from activities.messaging import MessagingActivities
from activities.services import Services


def all_activities(services: Services) -> list[Callable[..., Any]]:
    """Every activity the worker registers, bound to one set of services."""
    journeys = JourneyActivities(services)
    messaging = MessagingActivities(services)
    return [
        journeys.match_journeys,
        journeys.load_context,
        journeys.evaluate_condition,
        journeys.update_customer,
        journeys.record_run,
        journeys.record_run_events,
        messaging.send_message,
        messaging.give_up_send,
        *CustomActivities(services).all(),
        *InsightActivities(services).all(),
    ]
