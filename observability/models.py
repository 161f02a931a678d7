"""Request records: one lean row per proxied request, its bodies in a table of their own, and the per-org
settings and price overrides that shape them."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from proxy.records import Outcome as ProxyOutcome
from tenancy.models import APIKey, App, Organization, Team

# The proxy's outcomes (proxy.records.Outcome, the one list) as model choices, with the words pages show.
_OUTCOME_LABELS = {
    ProxyOutcome.OK: "Completed",
    ProxyOutcome.UPSTREAM_ERROR: "Provider error",
    ProxyOutcome.GATEWAY_ERROR: "Refused by Ingate",
    ProxyOutcome.UPSTREAM_UNREACHABLE: "Provider unreachable",
    ProxyOutcome.UPSTREAM_TIMEOUT: "Provider timed out",
    ProxyOutcome.UPSTREAM_CUT: "Provider broke off the stream",
    ProxyOutcome.CLIENT_DISCONNECT: "Client went away",
    ProxyOutcome.LIMITED: "Refused by a budget or rate limit",
    ProxyOutcome.BLOCKED: "Blocked by a guardrail",
}
Outcome = models.TextChoices(
    "Outcome", [(outcome.name, (outcome.value, _OUTCOME_LABELS[outcome])) for outcome in ProxyOutcome], module=__name__
)


# A request that did not end well: refused, cut, timed out, or answered with an error status.
FAILED = ~models.Q(outcome=Outcome.OK) | models.Q(status__gte=400)


class UsageSource(models.TextChoices):
    REPORTED = "reported", "Reported by the provider"
    ESTIMATED = "estimated", "Estimated by Ingate"
    NONE = "none", "Not available"


# Endpoints a provider bills by the token (chat, completions, responses, messages, embeddings, Gemini's generate
# and embed verbs, Ollama's chat/generate/embed). Model lists, token counts, moderations, batches and files are
# not billed per request, so they are never "unpriced".
BILLED_ENDPOINTS = frozenset(
    {
        "chat.completions",
        "completions",
        "responses",
        "embeddings",
        "messages",
        "complete",
        "generateContent",
        "streamGenerateContent",
        "embedContent",
        "batchEmbedContents",
        "chat",
        "generate",
        "embed",
    }
)

# Unpriced: a request that did not fail, of a kind billed by the token (the provider reported token usage, or it
# went to a billed endpoint), whose cost Ingate does not know (no price for the model, or no usage to price).
# A failed request is "failed", never unpriced; a request of another kind has no cost at all. A failed request
# can still carry a cost (a stream cut after the provider counted the prompt): its cost is what was billed.
UNPRICED = (
    ~FAILED
    & models.Q(cost_total__isnull=True)
    & (models.Q(usage_source=UsageSource.REPORTED) | models.Q(endpoint__in=BILLED_ENDPOINTS))
)


class RequestRecord(models.Model):
    """What happened to one request. The id is the `X-Ingate-Request-Id` the client received."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+", db_index=False)
    team = models.ForeignKey(Team, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False)
    app = models.ForeignKey(App, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False)
    key = models.ForeignKey(APIKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False)
    created_at = models.DateTimeField(default=timezone.now)

    provider = models.CharField(max_length=64)
    endpoint = models.CharField(max_length=64)
    model = models.CharField(max_length=200, blank=True, help_text="As requested.")
    response_model = models.CharField(max_length=200, blank=True, help_text="As the provider answered.")
    status = models.PositiveSmallIntegerField(default=0)
    outcome = models.CharField(max_length=24, choices=Outcome.choices, default=Outcome.OK)
    error_type = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    stream = models.BooleanField(default=False)
    passthrough = models.BooleanField(default=False, help_text="The client's own provider key was used.")

    # Input counts every prompt token, cached ones included, whatever the provider's own convention.
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    cache_read_tokens = models.PositiveIntegerField(null=True, blank=True)
    # Every cache write; of those, the ones the provider billed at its one-hour rate (Anthropic's ttl "1h").
    cache_write_tokens = models.PositiveIntegerField(null=True, blank=True)
    cache_write_1h_tokens = models.PositiveIntegerField(null=True, blank=True)
    reasoning_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)
    usage_source = models.CharField(max_length=10, choices=UsageSource.choices, default=UsageSource.NONE)

    # USD. Null when the model's price is unknown: never guessed as zero.
    cost_input = models.DecimalField(max_digits=18, decimal_places=10, null=True, blank=True)
    cost_output = models.DecimalField(max_digits=18, decimal_places=10, null=True, blank=True)
    cost_cache = models.DecimalField(max_digits=18, decimal_places=10, null=True, blank=True)
    # Server-side tool fees (web searches, code execution), per call as the price table has them.
    cost_tools = models.DecimalField(max_digits=18, decimal_places=10, null=True, blank=True)
    cost_total = models.DecimalField(max_digits=18, decimal_places=10, null=True, blank=True)
    price_source = models.CharField(max_length=40, blank=True, help_text="genai-prices@<version>, override, free")
    service_tier = models.CharField(
        max_length=32, blank=True, help_text="The tier the provider reports it billed (flex, priority, …)."
    )
    # Server-side tool calls the provider billed, by kind: {"web_search": 2, "code_execution": 1}.
    tool_calls = models.JSONField(default=dict, blank=True)

    total_ms = models.FloatField(default=0)
    ttfb_ms = models.FloatField(null=True, blank=True)
    upstream_ms = models.FloatField(default=0)
    overhead_ms = models.FloatField(default=0)

    session_id = models.CharField(max_length=200, blank=True)
    session_path = models.CharField(max_length=500, blank=True)
    session_name = models.CharField(max_length=200, blank=True)
    user_id = models.CharField(max_length=200, blank=True)
    properties = models.JSONField(default=dict, blank=True)
    client = models.CharField(max_length=64, blank=True, help_text="claude-cli, openai-python, aider, …")
    user_agent = models.CharField(max_length=300, blank=True)
    request_bytes = models.PositiveIntegerField(default=0)
    response_bytes = models.PositiveIntegerField(default=0)
    cache_hit = models.BooleanField(default=False)
    # A cache hit costs nothing: what the original answer cost is kept here, and the record that filled the entry.
    cost_saved = models.DecimalField(max_digits=18, decimal_places=10, null=True, blank=True)
    cache_source = models.CharField(max_length=64, blank=True)
    # Guardrails (proxy/guardrails): the strongest decision ("", flagged, redacted, blocked) and each decision
    # (check, kind, action, direction, a masked hint: never the matched text). Webhooks fire guardrail.triggered
    # from these two.
    guardrail = models.CharField(max_length=16, blank=True, db_index=True)
    guardrail_decisions = models.JSONField(default=list, blank=True)
    # A routed request (proxy/routing): the route's name ("fallback" for an X-Ingate-Fallback chain) and every
    # attempt in order: provider, model, credential name, status, error, ms. Provider and model above are the
    # target that answered.
    route = models.CharField(max_length=100, blank=True)
    attempts = models.JSONField(default=list, blank=True)
    # No database constraint: records outlive prompts, and on PostgreSQL they live in partitions.
    prompt_version = models.ForeignKey(
        "prompts.PromptVersion",
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    # What the writer had to change to store the record (a NUL stripped, a count clamped) and why it is
    # unpriced when its usage could not be priced: one human-readable note each.
    flags = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["org", "-created_at"], name="record_org_time"),
            models.Index(fields=["org", "session_id", "created_at"], name="record_org_session"),
            models.Index(fields=["org", "user_id", "-created_at"], name="record_org_user"),
            models.Index(fields=["org", "model", "-created_at"], name="record_org_model"),
            models.Index(fields=["org", "app", "-created_at"], name="record_org_app"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.endpoint} {self.model} ({self.status})"

    @property
    def priced(self) -> bool:
        """The cost is known (it may be $0: free models, self-hosted Ollama)."""
        return self.cost_total is not None

    # The Python side of FAILED and UNPRICED, for records in hand (the writer's rollups, pages): keep them equal.
    @property
    def failed(self) -> bool:
        return self.outcome != Outcome.OK or self.status >= 400

    @property
    def unpriced(self) -> bool:
        billed = self.usage_source == UsageSource.REPORTED or self.endpoint in BILLED_ENDPOINTS
        return not self.failed and self.cost_total is None and billed


class DeadRecord(models.Model):
    """A record the writer could not store even after sanitising it. Kept here, out of the batch it came in, so
    the rest of the batch is written; an operator looks at it in the admin and replays it once fixed."""

    record_id = models.CharField(max_length=64, unique=True, help_text="The request id the client received.")
    # No database constraint: the record may be dead precisely because its org is gone.
    org = models.ForeignKey(
        Organization,
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    stage = models.CharField(
        max_length=16, help_text="read (off the stream), build (into a row) or insert (storing the row)."
    )
    # The record as the stream carries it (rows.slim), as JSON text: NULs stay escaped, so it can be stored.
    payload = models.TextField()
    error = models.TextField()
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=1, help_text="Times it failed, replays included.")

    class Meta:
        ordering = ["-last_seen"]

    def __str__(self) -> str:
        return f"dead record {self.record_id}"


class RequestBody(models.Model):
    """Bodies live apart from the records, so scans and aggregates never read them."""

    # No database constraint: on PostgreSQL records live in daily partitions keyed by (id, created_at).
    record = models.OneToOneField(
        RequestRecord, on_delete=models.CASCADE, primary_key=True, related_name="body", db_constraint=False
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True, help_text="The record's, for retention.")
    metadata = models.JSONField(
        default=dict, blank=True, help_text="The request's shape: messages by role, tools, parameters."
    )
    request = models.TextField(blank=True)
    response = models.TextField(blank=True, help_text="Streamed answers are stored reassembled as text.")
    truncated = models.BooleanField(default=False)


class BodyMode(models.TextChoices):
    OFF = "off", "Keep nothing of the bodies"
    METADATA = "metadata", "Metadata only (tokens, model, timings)"
    FULL = "full", "Full bodies (size-capped)"


class ObservabilitySettings(models.Model):
    org = models.OneToOneField(Organization, on_delete=models.CASCADE, primary_key=True, related_name="observability")
    body_mode = models.CharField(max_length=10, choices=BodyMode.choices, default=BodyMode.METADATA)
    body_max_bytes = models.PositiveIntegerField(default=256 * 1024)
    retention_days = models.PositiveIntegerField(default=30)

    class Meta:
        verbose_name_plural = "observability settings"

    def __str__(self) -> str:
        return f"observability of {self.org}"


class PriceOverride(models.Model):
    """An org's own price for a model (fine-tuned, negotiated, self-hosted), in USD per million tokens."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="price_overrides")
    model = models.CharField(max_length=200, help_text="The model name as requested or answered.")
    input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))
    output_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))
    cache_read_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    cache_write_per_mtok = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="5-minute cache writes; the input price when empty.",
    )
    cache_write_1h_per_mtok = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="One-hour cache writes; the cache write price when empty.",
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "model"], name="price_override_unique_model")]

    def __str__(self) -> str:
        return f"{self.org.slug}: {self.model}"


# Latency histogram bucket upper bounds (ms) for rollups; the last bucket is everything slower.
LATENCY_BOUNDS_MS = (
    50,
    100,
    200,
    300,
    500,
    750,
    1000,
    1500,
    2000,
    3000,
    5000,
    7500,
    10_000,
    15_000,
    20_000,
    30_000,
    60_000,
)


class RecordRollup(models.Model):
    """Hourly sums per org and dimension (`all`, `model`, `provider`, `app`, `key`, `user`), kept by the record
    writer as it inserts, so the overview never scans raw rows. `latency` is a histogram over
    LATENCY_BOUNDS_MS (+1 overflow bucket), filled only for the `all` dimension."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+", db_index=False)
    bucket = models.DateTimeField()
    dimension = models.CharField(max_length=16)
    value = models.CharField(max_length=200, blank=True)
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    unpriced = models.PositiveIntegerField(default=0)
    # Requests whose cost is known: with `unpriced`, tells "$0" (free) from "unpriced" and from "no cost at all".
    priced = models.PositiveIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=20, decimal_places=10, default=Decimal(0))
    # Requests answered from the response cache, and what their originals cost (not in `cost`: a hit bills $0).
    cache_hits = models.PositiveIntegerField(default=0)
    cost_saved = models.DecimalField(max_digits=20, decimal_places=10, default=Decimal(0))
    latency = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "dimension", "bucket", "value"], name="rollup_unique_bucket")
        ]
        # Breakdowns over a month read a user dimension's ~200k rows: straight from the index (PostgreSQL).
        indexes = [
            models.Index(
                fields=["org", "dimension", "bucket"],
                include=["value", "requests", "cost", "input_tokens", "output_tokens"],
                name="rollup_breakdown",
            )
        ]

    def __str__(self) -> str:
        return f"{self.org_id} {self.dimension}={self.value} @ {self.bucket:%Y-%m-%d %H}:00"


class SessionRollup(models.Model):
    """One row per session, kept by the record writer: the sessions list never groups raw rows."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+", db_index=False)
    session_id = models.CharField(max_length=200)
    name = models.CharField(max_length=200, blank=True)
    user_id = models.CharField(max_length=200, blank=True)
    client = models.CharField(max_length=64, blank=True)
    started = models.DateTimeField()
    ended = models.DateTimeField()
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    unpriced = models.PositiveIntegerField(default=0)
    priced = models.PositiveIntegerField(default=0)
    tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=20, decimal_places=10, default=Decimal(0))

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "session_id"], name="session_rollup_unique")]
        indexes = [models.Index(fields=["org", "-ended"], name="session_rollup_recent")]

    def __str__(self) -> str:
        return f"{self.org_id}/{self.session_id}"


class ScoreSource(models.TextChoices):
    API = "api", "An application, with a gateway key"
    PERSON = "person", "A person, in the dashboard or the API"


class Score(models.Model):
    """Feedback on one production request: a number (`value`) or a word (`label`) under a name (`helpful`,
    `correct`, …), with an optional comment, from an application or a person. A record may carry many, of
    many names; re-scoring adds a row, so the history of opinions stays."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+", db_index=False)
    # No database constraint (records live in partitions on PostgreSQL); the ORM still deletes a record's scores
    # with it (retention deletes records through the ORM).
    record = models.ForeignKey(
        RequestRecord, on_delete=models.CASCADE, related_name="scores", db_constraint=False, db_index=False
    )
    name = models.CharField(
        max_length=100,
        validators=[RegexValidator(r"^[\w.:/-]+$", "Name a score in one word: helpful, correct, tone/polite, …")],
        help_text="What is scored: helpful, correct, tone, … (no spaces).",
    )
    value = models.FloatField(null=True, blank=True)
    label = models.CharField(max_length=100, blank=True)
    comment = models.TextField(blank=True)
    source = models.CharField(max_length=8, choices=ScoreSource.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    key = models.ForeignKey(APIKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    author_name = models.CharField(max_length=200, blank=True, help_text="Who scored, as text (survives the user).")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(value__isnull=False) & models.Q(label=""))
                | (models.Q(value__isnull=True) & ~models.Q(label="")),
                name="score_value_or_label",
            )
        ]
        indexes = [
            # "records with a score named X (of value Y)": the logs filter and the review queue's "not yet scored".
            models.Index(fields=["record", "name"], name="score_record_name"),
            models.Index(fields=["org", "name", "-created_at"], name="score_org_name_time"),
        ]

    def __str__(self) -> str:
        return f"{self.name}={self.shown} on {self.record_id}"

    @property
    def shown(self) -> str:
        """The value as pages show it: the label, or the number without a needless `.0`."""
        if self.label:
            return self.label
        return f"{self.value:g}" if self.value is not None else ""


class SavedView(models.Model):
    """A person's saved logs view in one org: a name for a filter, search and sort, kept as the query string the
    logs page reads back (observability/views.py `logs`)."""

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="+")
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=80)
    query = models.CharField(max_length=2000, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["user", "org", "name"], name="saved_view_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.org_id})"


# Kept with the export that empties it (observability/export); imported here so Django finds the model.
from .export.models import PendingBody  # noqa: E402, F401
