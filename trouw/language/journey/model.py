"""The journey language as pydantic models: a trigger, settings and a flat list of typed steps."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import time, timedelta
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from trouw.language.journey.durations import parse_duration
from trouw.language.journey.expressions import check_expression
from trouw.language.vocabulary import Category, Channel

Match = Literal["order", "product", "any"]

STEP_ACTIONS = (
    "send",
    "wait",
    "wait_until",
    "wait_for",
    "branch",
    "split",
    "update",
    "call",
    "goal",
    "exit",
)
ID_PATTERN = r"^[a-z][a-z0-9_]*$"
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def _duration(value: Any) -> str:
    parse_duration(value)
    return str(value) if not isinstance(value, int) else f"{value}d"


def _expression(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("an expression must be a non-empty string")
    check_expression(value)
    return value


def _clock(value: Any) -> str:
    if not isinstance(value, str) or not _TIME.match(value):
        raise ValueError(f"bad time of day {value!r}: write it as HH:MM, like 09:30")
    return value


def parse_clock(value: str) -> time:
    hour, minute = value.split(":")
    return time(int(hour), int(minute))


_DURATION_SCHEMA = Field(json_schema_extra={"pattern": r"^(\d+\s*[wdhms]\s*)+$"})
# A duration ("3d", "1w 2d", or a whole number of days), stored as written (days as "Nd").
Duration = Annotated[str, BeforeValidator(_duration), _DURATION_SCHEMA]
# An expression of the journey language, checked when the journey loads.
Expression = Annotated[str, Field(min_length=1), AfterValidator(_expression)]
StepId = Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]


class Trigger(Strict):
    """What starts a run: an event (with a condition), or a date in the customer's data."""

    event: str | None = None
    date: Expression | None = None
    at: str = "09:00"
    every: Literal["year"] | None = None
    when: Expression | None = None
    for_each: Expression | None = None
    as_: str = Field(default="item", alias="as", pattern=ID_PATTERN)
    reentry: str = "order"

    @field_validator("at")
    @classmethod
    def _at(cls, value: str) -> str:
        return _clock(value)

    @model_validator(mode="after")
    def _one_kind(self) -> Trigger:
        if (self.event is None) == (self.date is None):
            raise ValueError("a trigger has either `event` or `date`")
        if self.every and self.date is None:
            raise ValueError("`every` goes with a `date` trigger")
        return self


class ExitRule(Strict):
    """An event that ends a run at once, even in the middle of a wait."""

    event: str
    match: Match = "any"
    when: Expression | None = None


class GoalRule(Strict):
    """A conversion: the event ends the run and is recorded as the journey's goal."""

    event: str
    name: str = Field(pattern=ID_PATTERN)
    match: Match = "any"


class JourneySettings(Strict):
    category: Category = "service"
    service_cutoff: Duration = "180d"
    exit_on: list[ExitRule] = Field(default_factory=list)
    goals: list[GoalRule] = Field(default_factory=list)
    promotional_when_busy: Literal["skip", "defer"] = "skip"
    promotional_defer_limit: Duration = "2d"


class StepBase(Strict):
    id: StepId
    next: StepId | None = None
    description: str | None = None


class SendStep(StepBase):
    send: Channel
    template: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    category: Category | None = None
    when: Expression | None = None
    # A send that fails (a template that does not render, a refused address) is recorded in the
    # ledger; the run goes on with the next step, or ends when this says exit.
    on_error: Literal["continue", "exit"] = "continue"


class WaitStep(StepBase):
    wait: Duration


class WaitUntilSpec(Strict):
    date: Expression | None = None
    time: str | None = None
    offset: Annotated[str, _DURATION_SCHEMA] | None = None  # signed: "-1d" is a day before

    @field_validator("time")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        return None if value is None else _clock(value)

    @field_validator("offset", mode="before")
    @classmethod
    def _dur(cls, value: Any) -> str | None:
        if value is None:
            return None
        text = str(value).strip()
        sign = "-" if text.startswith("-") else ""
        return sign + _duration(text.lstrip("+-"))

    @model_validator(mode="after")
    def _something(self) -> WaitUntilSpec:
        if self.date is None and self.time is None:
            raise ValueError("wait_until needs `date`, `time` or both")
        return self

    def offset_delta(self) -> timedelta:
        if not self.offset:
            return timedelta()
        if self.offset.startswith("-"):
            return -parse_duration(self.offset[1:])
        return parse_duration(self.offset)


class WaitUntilStep(StepBase):
    wait_until: WaitUntilSpec

    @field_validator("wait_until", mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        return {"date": value} if isinstance(value, str) else value


class WaitForStep(StepBase):
    wait_for: str
    match: Match = "order"
    # Only an event for which this holds ends the wait (`event` is the arriving event).
    when: Expression | None = None
    timeout: Duration
    on_timeout: StepId | None = None


class BranchCase(Strict):
    if_: Expression = Field(alias="if")
    goto: StepId


class BranchStep(StepBase):
    branch: list[BranchCase] = Field(min_length=1)
    else_: StepId | None = Field(default=None, alias="else")


class SplitArm(Strict):
    name: str = Field(pattern=ID_PATTERN)
    weight: int = Field(gt=0)
    goto: StepId | None = None
    holdout: bool = False

    @model_validator(mode="after")
    def _target(self) -> SplitArm:
        if self.holdout and self.goto:
            raise ValueError("a hold-out arm receives nothing: it has no `goto`")
        return self


class SplitStep(StepBase):
    split: list[SplitArm] = Field(min_length=2)


class UpdateSpec(Strict):
    attributes: dict[str, Expression] = Field(default_factory=dict)
    tags_add: list[str] = Field(default_factory=list)
    tags_remove: list[str] = Field(default_factory=list)


class UpdateStep(StepBase):
    update: UpdateSpec


class CallStep(StepBase):
    call: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    as_: str | None = Field(default=None, alias="as", pattern=ID_PATTERN)


class GoalStep(StepBase):
    goal: str = Field(pattern=ID_PATTERN)


class ExitStep(StepBase):
    exit: str = Field(min_length=1)


def step_action(value: Any) -> str | None:
    """The one action key a step has; None when it has none or several."""
    if isinstance(value, BaseModel):
        value = value.model_dump(by_alias=True)
    if not isinstance(value, dict):
        return None
    found = [key for key in STEP_ACTIONS if key in value]
    return found[0] if len(found) == 1 else None


Step = Annotated[
    Annotated[SendStep, Tag("send")]
    | Annotated[WaitStep, Tag("wait")]
    | Annotated[WaitUntilStep, Tag("wait_until")]
    | Annotated[WaitForStep, Tag("wait_for")]
    | Annotated[BranchStep, Tag("branch")]
    | Annotated[SplitStep, Tag("split")]
    | Annotated[UpdateStep, Tag("update")]
    | Annotated[CallStep, Tag("call")]
    | Annotated[GoalStep, Tag("goal")]
    | Annotated[ExitStep, Tag("exit")],
    Discriminator(
        step_action,
        custom_error_type="step_action",
        custom_error_message="a step needs exactly one action: " + ", ".join(STEP_ACTIONS),
    ),
]


# The step types as one union, for exhaustive dispatch (`match` + `assert_never`).
AnyStep = (
    SendStep
    | WaitStep
    | WaitUntilStep
    | WaitForStep
    | BranchStep
    | SplitStep
    | UpdateStep
    | CallStep
    | GoalStep
    | ExitStep
)


class Journey(Strict):
    """One journey: a marketer's YAML file in journeys/."""

    journey: str = Field(pattern=ID_PATTERN, max_length=64)
    description: str | None = None
    trigger: Trigger
    settings: JourneySettings = Field(default_factory=JourneySettings)
    steps: list[Step] = Field(min_length=1)

    @property
    def name(self) -> str:
        return self.journey

    @cached_property
    def version(self) -> str:
        """A content hash: comments and key order do not change it, content does.

        Computed once per loaded journey (the model is frozen): match_journeys asks for it for
        every run it plans."""
        canonical = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def cutoff(self) -> timedelta:
        return parse_duration(self.settings.service_cutoff)

    def step(self, step_id: str) -> AnyStep:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def listens_to(self) -> set[str]:
        """Event types a running run must hear about: exits, goals and waits."""
        events = {rule.event for rule in self.settings.exit_on}
        events |= {goal.event for goal in self.settings.goals}
        events |= {step.wait_for for step in self.steps if isinstance(step, WaitForStep)}
        return events


def journey_json_schema() -> dict[str, Any]:
    schema = Journey.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Trouw journey"
    return schema
