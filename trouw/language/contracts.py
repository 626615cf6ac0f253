"""Wire models between the API, workflows and activities: one input and one result per call."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from trouw.language.vocabulary import Category, Channel, GiveUpKind, SendOutcome

# Pinned wire names: renaming a Python class or method must never change these.
CUSTOMER_WORKFLOW = "Customer"
JOURNEY_WORKFLOW = "Journey"
RECORD_EVENT_SIGNAL = "record_event"
PING_SIGNAL = "ping"  # answered by a running journey run: nothing else happens
STATUS_QUERY = "status"
HELD_RUNS_QUERY = "held_runs"  # the customer workflow's runs not started yet (RunPlan.due)
# When a workflow wakes next by itself (a run's wait, a held run's start); the simulator
# stops there to sweep what the wake-up issued (a voucher) at its own moment.
NEXT_WAKE_QUERY = "next_wake"
# An operator's cancel of a journey reaches the customer workflow's held runs of it by this.
CANCEL_HELD_RUNS_SIGNAL = "cancel_held_runs"
# Activity wire names: workflows call the activities by these, the activities register under them.
MATCH_JOURNEYS = "match_journeys"
LOAD_CONTEXT = "load_context"
EVALUATE_CONDITION = "evaluate_condition"
UPDATE_CUSTOMER = "update_customer"
RECORD_RUN = "record_run"
RECORD_RUN_EVENTS = "record_run_events"
SEND_MESSAGE = "send_message"
GIVE_UP_SEND = "give_up_send"


# The events by which a customer withdraws consent. Each carries in its data the `channel` it
# covers (email, sms or all) and its `scope` (promotional, service or all), so exit rules can
# tell them apart; none of them ever stops a transactional message (journeys/README.md).
CONSENT_WITHDRAWALS: frozenset[str] = frozenset({"unsubscribe", "opt_out", "sms_stop"})
WithdrawalScope = Literal["promotional", "service", "all"]


def customer_workflow_id(customer_id: str) -> str:
    return f"customer:{customer_id}"


class Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CustomerEvent(Wire):
    """Something that happened to a customer: a purchase, a delivery, an unsubscribe..."""

    id: str  # the source id: the same event twice is dropped by this id
    type: str
    customer_id: str
    at: datetime
    order_id: str | None = None
    skus: list[str] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)


class ActiveRun(Wire):
    workflow_id: str
    journey: str
    listens: list[str]


class MatchJourneysInput(Wire):
    customer_id: str
    event: CustomerEvent
    now: datetime


class RunPlan(Wire):
    workflow_id: str
    journey: str
    version: str
    definition: dict[str, Any]
    reentry_key: str
    context: dict[str, Any]
    order_id: str | None = None
    skus: list[str] = Field(default_factory=list)
    # When the run's first step, a wait, ends (trouw.language.journey.waits.first_wait_end): the
    # customer workflow starts the run then, or earlier when an event the run listens for comes.
    due: datetime | None = None


class WaitingRun(Wire):
    """A planned run the customer workflow holds until its first wait ends."""

    plan: RunPlan
    trigger: CustomerEvent
    listens: list[str]


class CancelHeldRuns(Wire):
    """Drop the held runs of this journey: each is recorded cancelled with this reason."""

    journey: str
    reason: str  # the run's end reason, e.g. `cancelled by cli:ann: complaint`


class CustomerInput(Wire):
    customer_id: str
    seen: list[str] = Field(default_factory=list)
    runs: list[ActiveRun] = Field(default_factory=list)
    waiting: list[WaitingRun] = Field(default_factory=list)  # runs not started yet (RunPlan.due)
    pending: list[CustomerEvent] = Field(default_factory=list)
    search_attributes: bool = True
    # The simulator runs scenarios dated in the past: workflows add this to workflow.now().
    clock_offset_seconds: float = 0.0
    # Continue-as-new once the history is this long (tests set it low to exercise it).
    history_limit: int = 2000
    handled: int = 0
    # Set only for executions of the engine that runs journeys inside the customer workflow
    # (coroutines, not child workflows): histories of executions started before have no such
    # field and replay down the child-workflow path.
    inline_runs: bool = False
    # Inline runs carried over continue-as-new, each with its resume state (ResumeState.wake).
    inline: list[CarriedRun] = Field(default_factory=list)


class MatchJourneysResult(Wire):
    runs: list[RunPlan] = Field(default_factory=list)


class ResumeState(Wire):
    """Where a run continues after continue-as-new."""

    step: str | None
    vars: dict[str, Any] = Field(default_factory=dict)
    events: dict[str, Any] = Field(default_factory=dict)
    visits: dict[str, int] = Field(default_factory=dict)
    inbox: list[CustomerEvent] = Field(default_factory=list)  # events a later wait_for may need
    winding_down: str | None = None  # exited by a consent withdrawal: only receipts still go
    # Set when the run went on in a fresh history in the middle of a wait (an inline run carried
    # over its customer workflow's continue-as-new): the wait ends at this moment, as it would
    # have. With `reenter`, `step` is the wait_for step to wait in again (until `wake`, its
    # deadline); without, `step` is where the run goes on once `wake` has passed.
    wake: datetime | None = None
    waiting_in: str | None = None  # the step the run waits in until `wake` (None: its start)
    reenter: bool = False


class JourneyInput(Wire):
    customer_id: str
    journey: str
    version: str
    definition: dict[str, Any]
    trigger: CustomerEvent
    context: dict[str, Any]
    order_id: str | None = None
    skus: list[str] = Field(default_factory=list)
    cycle: int = 0
    resume: ResumeState | None = None
    search_attributes: bool = True
    clock_offset_seconds: float = 0.0
    # Set when the customer workflow held the run until its first wait ends: that wait ends
    # here, counted from the trigger, not from the run's start.
    first_wake: datetime | None = None


class CarriedRun(Wire):
    """A journey run inside the customer workflow, carried over its continue-as-new."""

    workflow_id: str  # the run's id: its message keys, call keys and record are made from it
    input: JourneyInput  # with `resume` (where and until when it waits)


class JourneyResult(Wire):
    outcome: Literal["completed", "exited", "converted", "held_out", "cancelled"]
    reason: str | None = None
    sent: int = 0


class LoadContextInput(Wire):
    customer_id: str
    order_id: str | None
    skus: list[str] = Field(default_factory=list)
    now: datetime


class ContextResult(Wire):
    context: dict[str, Any]


class SendMessageInput(Wire):
    message_key: str
    customer_id: str
    journey: str
    journey_version: str
    workflow_id: str
    step: str
    channel: Channel
    template: str
    category: Category
    triggered_at: datetime
    service_cutoff_days: int
    promotional_when_busy: Literal["skip", "defer"] = "skip"
    defer_deadline: datetime | None = None
    now: datetime
    order_id: str | None = None
    skus: list[str] = Field(default_factory=list)
    vars: dict[str, Any] = Field(default_factory=dict)


class SendMessageResult(Wire):
    message_key: str
    outcome: SendOutcome
    reason: str | None = None
    reason_text: str | None = None
    until: datetime | None = None


class GiveUpSendInput(Wire):
    """No attempt of a send will follow: the ledger row that an attempt left on its way
    (claimed, in flight, reconciling) ends with why. `ended_by`: the send activity's retries
    are over (its timeout or its attempts), or the run was cancelled while the send went on."""

    request: SendMessageInput
    reason: str
    ended_by: GiveUpKind = "retries_over"


class EvaluateConditionInput(Wire):
    """A condition that reads a personal attribute, with the run's own (history-safe) scope."""

    customer_id: str
    expression: str
    scope: dict[str, Any] = Field(default_factory=dict)


class ConditionResult(Wire):
    """Only the answer travels back into the history, never the attribute's value."""

    value: bool


class UpdateCustomerInput(Wire):
    customer_id: str
    attributes: dict[str, Any] = Field(default_factory=dict)
    tags_add: list[str] = Field(default_factory=list)
    tags_remove: list[str] = Field(default_factory=list)
    now: datetime


class CallActivityInput(Wire):
    """What a custom activity receives: who, the journey's arguments, and an idempotency key."""

    key: str
    customer_id: str
    journey: str
    args: dict[str, Any] = Field(default_factory=dict)
    now: datetime


CALL_EVENTS_KEY = "_events"


class CallEvent(Wire):
    """An event a custom activity reports (voucher_issued): the run signals it to the customer
    workflow, for the customer the run is for."""

    id: str
    type: str
    at: datetime
    order_id: str | None = None
    skus: list[str] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)


class CallActivityResult(Wire):
    """What a custom activity returns: its values (the step's `as:` name holds them) and the
    events it reports. Wire shape pinned: the values at the top level and the events under
    "_events", as histories before this model hold them; a plain dict decodes as well."""

    model_config = ConfigDict(frozen=True, extra="allow", serialize_by_alias=True)

    events: list[CallEvent] = Field(default_factory=list, alias=CALL_EVENTS_KEY)

    @classmethod
    def of(cls, values: dict[str, Any], events: list[CallEvent]) -> CallActivityResult:
        # By the alias only: an activity's own value named "events" stays one of its values.
        return cls.model_validate({**values, CALL_EVENTS_KEY: events})

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


# What a run record says happened: how a run started or why it did not, what it did on the way
# (a branch taken, a step skipped, tags set), and how it ended. The last six are run statuses.
RunEventKind = Literal[
    "started",
    "not_started",
    "branched",
    "skipped",
    "tagged",
    "updated",
    "completed",
    "exited",
    "converted",
    "held_out",
    "failed",
    "cancelled",
]
RunEnd = Literal["completed", "exited", "converted", "held_out", "failed", "cancelled"]


class RunEventRecord(Wire):
    """One thing a run did, noted by the workflow; `key` makes a retried write a no-op."""

    key: str
    kind: RunEventKind
    at: datetime
    step: str | None = None
    reason: str | None = None
    expression: str | None = None
    # Set on a split's "branched" note: the arm taken (kept in split_assignment for reports).
    arm: str | None = None
    holdout: bool = False


class RecordRunEventsInput(Wire):
    workflow_id: str
    events: list[RunEventRecord]


class GoalReached(Wire):
    """The goal a run converted on, and the event that met it (None for a `goal:` step);
    record_run stores it with its value (goal_conversion)."""

    goal: str
    event_id: str | None = None
    event_type: str | None = None
    order_id: str | None = None


class RecordRunInput(Wire):
    workflow_id: str
    status: Literal["running"] | RunEnd
    reason: str | None = None
    now: datetime
    events: list[RunEventRecord] = Field(default_factory=list)  # noted since the last record
    goal: GoalReached | None = None  # set when the run ends converted


# --- insight refresh (workflows/insight.py, activities/insight.py) ---------------------------
INSIGHT_REFRESH_WORKFLOW = "InsightRefresh"
INSIGHT_PROGRESS_QUERY = "progress"
INSIGHT_SCHEDULE_ID = "insight-refresh-nightly"


class InsightRefreshInput(Wire):
    """A refresh as of a moment (None: when the workflow starts, as the nightly schedule does)."""

    as_of: datetime | None = None
    horizon_days: int | None = None  # None: the insight_horizon_days setting
    chunk_size: int | None = None  # None: the insight_chunk_size setting


class ScoreInsightInput(Wire):
    refresh_id: str
    as_of: datetime
    horizon_days: int | None = None
    chunk_size: int | None = None


class ScoreInsightResult(Wire):
    customers: int
    chunks: list[tuple[str, str]]  # (first customer id, last customer id) of each chunk


class ApplyInsightChunkInput(Wire):
    refresh_id: str
    first: str
    last: str


class ApplyInsightChunkResult(Wire):
    customers: int
    changes: int
    events: int


class FinishInsightRefreshInput(Wire):
    refresh_id: str
    started: datetime


class InsightRefreshResult(Wire):
    refresh_id: str
    as_of: datetime
    customers: int
    changes: int
    events: int
    seconds: float


class InsightProgress(Wire):
    phase: Literal["starting", "scoring", "applying", "done"]
    chunks_done: int = 0
    chunks: int = 0
    customers: int = 0


CustomerInput.model_rebuild()
