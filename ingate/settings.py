"""Ingate settings: the only module that reads the environment.

With nothing configured the gateway runs embedded (SQLite, in-process cache, eager Celery, in-memory
channel layer); `DATABASE_URL` and `REDIS_URL` switch on PostgreSQL and Redis. See `.env.example`.
"""

import secrets
from pathlib import Path
from urllib.parse import unquote

import environ
from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A .env next to manage.py is read when present; real environment variables win over it.
env.read_env(BASE_DIR / ".env", overwrite=False)

DATA_DIR = Path(env.str("INGATE_DATA_DIR", default=str(BASE_DIR / "data")))
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _persisted_secret(name: str, make) -> str:
    """Read a generated secret from the data folder, creating it (mode 0600) on first run.

    Keeps a fresh checkout working without a hard-coded default that could leak into production.
    """
    path = DATA_DIR / name
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = make()
        # O_EXCL: if two processes start at once, the loser reads the winner's value.
        try:
            fd = path.open("x", encoding="utf-8")
        except FileExistsError:
            return path.read_text().strip()
        with fd:
            path.chmod(0o600)
            fd.write(value)
        return value


DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="") or _persisted_secret("secret_key", lambda: secrets.token_urlsafe(50))
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])

# Comma-separated Fernet keys; the first encrypts, all decrypt (rotation without downtime).
INGATE_ENCRYPTION_KEYS = env.list("INGATE_ENCRYPTION_KEY", default=[]) or [
    _persisted_secret("encryption_key", lambda: Fernet.generate_key().decode())
]

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Behind a TLS-terminating proxy, trust its X-Forwarded-Proto and X-Forwarded-For.
if env.bool("INGATE_BEHIND_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
INGATE_TRUST_X_FORWARDED_FOR = env.bool("INGATE_BEHIND_PROXY", default=False)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "channels",
    "tenancy",
    "proxy",
    "observability",
    "prompts",
    "evals",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Database outages: a page answers 503 saying so rather than Django's HTML 500.
    "ingate.middleware.DatabaseOutageMiddleware",
]

ROOT_URLCONF = "ingate.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "ingate.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'ingate.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the dashboard read while the record writer writes; IMMEDIATE avoids
    # "database is locked" on lock upgrades inside transactions.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", "transaction_mode": "IMMEDIATE"}
    )
    # Tests get a file too, not the shared-cache in-memory default, whose table locks fail at once instead of
    # waiting: the live gateway's record writer and the test both use the database, as in production.
    DATABASES["default"].setdefault("TEST", {"NAME": str(DATA_DIR / "test_ingate.sqlite3")})
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
# --- database outages: bounded waits ----------------------------------------------------------------
# Seconds to open a connection (libpq's minimum is 2), and the longest a statement may run on the server (0:
# no limit; raise it for a migration of a big table). A network that drops packets mid-query cuts the
# connection after 10 s without acknowledgement (tcp_user_timeout; keepalives when idle); a server that
# accepts but never answers is bounded where it matters by INGATE_PROXY_DB_TIMEOUT and the health check's.
INGATE_DB_CONNECT_TIMEOUT = env.int("INGATE_DB_CONNECT_TIMEOUT", default=3)
INGATE_DB_STATEMENT_TIMEOUT = env.float("INGATE_DB_STATEMENT_TIMEOUT", default=30.0)
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
    _db_options = DATABASES["default"].setdefault("OPTIONS", {})
    _db_options.setdefault("connect_timeout", INGATE_DB_CONNECT_TIMEOUT)
    _db_options.setdefault("keepalives", 1)
    _db_options.setdefault("keepalives_idle", 10)
    _db_options.setdefault("keepalives_interval", 5)
    _db_options.setdefault("keepalives_count", 3)
    _db_options.setdefault("tcp_user_timeout", 10_000)
    if INGATE_DB_STATEMENT_TIMEOUT > 0:
        _statement = f"-c statement_timeout={int(INGATE_DB_STATEMENT_TIMEOUT * 1000)}"
        _db_options["options"] = f"{_db_options.get('options', '')} {_statement}".strip()
# How long a proxy request waits for the database on a cache miss before answering 503 in the provider's
# shape, and how long after its last successful load a cached key or org is still served while reloading it
# fails (the database is down). Revocations still reach every process through Redis and win over this.
INGATE_PROXY_DB_TIMEOUT = env.float("INGATE_PROXY_DB_TIMEOUT", default=2.0)
INGATE_KEY_CACHE_MAX_STALE = env.float("INGATE_KEY_CACHE_MAX_STALE", default=3600.0)
# Each part of /ingate/health gets this long (all are checked at once); one that has not answered is down.
INGATE_HEALTH_CHECK_TIMEOUT = env.float("INGATE_HEALTH_CHECK_TIMEOUT", default=1.5)
# --- end of database outages ---------------------------------------------------------------------------
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The rollups' covering index INCLUDEs columns on PostgreSQL; SQLite ignores the INCLUDE and says so.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

REDIS_URL = env.str("REDIS_URL", default="")
# The response cache without Redis: bytes each process keeps at most (least recently used answers go first).
INGATE_CACHE_MEMORY_BYTES = env.int("INGATE_CACHE_MEMORY_BYTES", default=64 * 1024 * 1024)
# Guardrails: a locally installed spaCy model (en_core_web_sm, …) lets PII checks find names of persons; empty:
# pattern recognizers only, and nothing is ever downloaded.
INGATE_GUARDRAILS_SPACY_MODEL = env.str("INGATE_GUARDRAILS_SPACY_MODEL", default="")

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    # --- channels layer (websockets) ---
    # channels_redis waits for messages with BZPOPMIN for 5 s (RedisChannelLayer.brpop_timeout), and redis-py 8
    # gives every connection a 5 s socket_timeout by default: the read then times out as Redis answers and the
    # consumer dies with "Timeout reading from …", dropping the websocket every ~5 s. Read timeout well above
    # the wait, so a Redis that stopped answering is still noticed.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5, "socket_keepalive": True}
                ]
            },
        }
    }
    # --- end channels layer ---
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Celery: Redis broker when configured, otherwise tasks run in-process (eager) so nothing needs a worker.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
LOGIN_URL = "/ingate/login/"
LOGIN_REDIRECT_URL = "/ingate/"
LOGOUT_REDIRECT_URL = "/ingate/login/"
# django-guardian's anonymous-user row is not needed: anonymous users never get object grants here.
ANONYMOUS_USER_NAME = None

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "ingate" / "static"]
# Serve straight from the apps' static folders: the embedded default needs no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenancy.authentication.GatewayKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tenancy.api.permissions.IsAuthenticatedPrincipal"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
        "rest_framework.filters.SearchFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "EXCEPTION_HANDLER": "tenancy.api.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Ingate API",
    "DESCRIPTION": "Manage organizations, teams, apps, gateway keys and provider credentials.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/ingate/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Gateway keys: `last_used_at` is written at most this often per key (a write per request would not scale).
INGATE_KEY_LAST_USED_INTERVAL = env.int("INGATE_KEY_LAST_USED_INTERVAL", default=60)
# Public base URL printed in examples (what clients should use as their provider base URL).
INGATE_PUBLIC_URL = env.str("INGATE_PUBLIC_URL", default="")
# Health check: how long to wait for a Celery worker to answer a ping.
INGATE_HEALTH_WORKER_TIMEOUT = env.float("INGATE_HEALTH_WORKER_TIMEOUT", default=1.0)

# --- the proxy -------------------------------------------------------------------------------------
from proxy.providers import REGISTRY  # noqa: E402  (pure data, no Django imports)

# Per provider: the instance-wide credential and upstream address from the environment. An org's stored
# credential wins over both. INGATE_UPSTREAM_<NAME> (e.g. INGATE_UPSTREAM_OPENAI=http://127.0.0.1:9999)
# replaces the default address; OPENAI_BASE_URL / ANTHROPIC_BASE_URL are deliberately not read: on a
# machine that points its own tools at Ingate they would make the gateway call itself.
INGATE_PROVIDER_ENV = {
    name: {
        "api_key": env.str(spec.env_key, default="") if spec.env_key else "",
        "base_url": env.str(f"INGATE_UPSTREAM_{name.upper()}", default="")
        or (env.str(spec.env_base_url, default="") if spec.env_base_url else ""),
    }
    for name, spec in REGISTRY.items()
}
# google-genai also reads GOOGLE_API_KEY.
INGATE_PROVIDER_ENV["gemini"]["api_key"] = INGATE_PROVIDER_ENV["gemini"]["api_key"] or env.str(
    "GOOGLE_API_KEY", default=""
)
# Azure: the api-version added when a client sends none (the /openai/v1/ API needs none).
INGATE_AZURE_API_VERSION = env.str("AZURE_OPENAI_API_VERSION", default="") or env.str("OPENAI_API_VERSION", default="")

# Seconds to open a connection to a provider, and the longest silence while waiting for its answer
# (time to first token on a long prompt, or a pause between stream chunks).
INGATE_UPSTREAM_CONNECT_TIMEOUT = env.float("INGATE_UPSTREAM_CONNECT_TIMEOUT", default=10.0)
INGATE_UPSTREAM_READ_TIMEOUT = env.float("INGATE_UPSTREAM_READ_TIMEOUT", default=600.0)
# Routes (proxy/routing): backoff between retries of one target (full jitter from `base` seconds, doubling, at most
# `cap`; a provider's retry-after wins, capped too); max_tokens for an OpenAI request answered by Anthropic
# (which requires it) when the client set none; a target's circuit opens after THRESHOLD failures within WINDOW
# seconds and stays open COOLDOWN seconds, then one probe request decides (shared through Redis when set).
INGATE_ROUTE_RETRY_BASE = env.float("INGATE_ROUTE_RETRY_BASE", default=0.5)
INGATE_ROUTE_RETRY_CAP = env.float("INGATE_ROUTE_RETRY_CAP", default=8.0)
INGATE_ROUTE_DEFAULT_MAX_TOKENS = env.int("INGATE_ROUTE_DEFAULT_MAX_TOKENS", default=4096)
INGATE_ROUTE_HEALTH_THRESHOLD = env.int("INGATE_ROUTE_HEALTH_THRESHOLD", default=5)
INGATE_ROUTE_HEALTH_WINDOW = env.float("INGATE_ROUTE_HEALTH_WINDOW", default=30.0)
INGATE_ROUTE_HEALTH_COOLDOWN = env.float("INGATE_ROUTE_HEALTH_COOLDOWN", default=30.0)
# Budgets and rate limits (proxy/limits): a request's worst case counts at least one input token per this many
# body bytes where no tokenizer counts it (2 bounds English, code and JSON from above), and this many output
# tokens when the request sets no max_tokens / max_completion_tokens / max_output_tokens.
INGATE_LIMITS_BYTES_PER_TOKEN = env.float("INGATE_LIMITS_BYTES_PER_TOKEN", default=2.0)
INGATE_LIMITS_DEFAULT_OUTPUT_TOKENS = env.int("INGATE_LIMITS_DEFAULT_OUTPUT_TOKENS", default=16384)
# How long a request's reservation holds if its gateway never settles it (a killed process); 0: the upstream read
# timeout plus a minute. And the window rate limits are counted over: a per-minute limit of N admits N x window/60
# per window (60: exactly per minute; shorter windows refuse bursts sooner, and let tests see whole windows).
INGATE_LIMITS_RESERVATION_TTL = env.float("INGATE_LIMITS_RESERVATION_TTL", default=0.0)
INGATE_LIMITS_RATE_WINDOW = env.float("INGATE_LIMITS_RATE_WINDOW", default=60.0)
# OpenAI-format bodies up to this many bytes have their input counted by OpenAI's tokenizer (o200k/cl100k, shipped
# in bpe-openai) instead of the bytes bound: ~0.1 us per byte, so a 4 KiB body costs ~0.3 ms. 0: bytes only.
INGATE_LIMITS_TOKENIZE_BYTES = env.int("INGATE_LIMITS_TOKENIZE_BYTES", default=4096)
# Largest request body accepted (Anthropic accepts 32 MB; images and PDFs travel base64-encoded).
INGATE_MAX_REQUEST_BYTES = env.int("INGATE_MAX_REQUEST_BYTES", default=32 * 1024 * 1024)
# How long a resolved gateway key or org credential set is trusted before it is read again. Revocation and
# credential changes reach every process at once through Redis when REDIS_URL is set (and the process that
# made the change at once in any case); without Redis, other processes see them within this many seconds.
INGATE_KEY_CACHE_TTL = env.float("INGATE_KEY_CACHE_TTL", default=60.0)
# Unknown keys are remembered for less time, so a key created a moment ago works almost at once.
INGATE_KEY_CACHE_MISS_TTL = env.float("INGATE_KEY_CACHE_MISS_TTL", default=5.0)
# The stages of the proxy's request path, in order (proxy/stages.py says what a stage may do). The relay and
# the record come after them. Not read from the environment: the order is part of the code's contract.
INGATE_PROXY_STAGES = [
    "proxy.stages.Authenticate",
    "proxy.routing.stage.Routing",
    "proxy.stages.Upstream",
    "prompts.stage.PromptStage",
    "proxy.stages.UsageOptions",
    "proxy.guardrails.stage.GuardrailsIn",  # before the cache and limits: a blocked request fills and costs nothing
    "proxy.response_cache.stage.ResponseCache",
    "proxy.limits.stage.Limits",
    "proxy.guardrails.stage.GuardrailsOut",  # last: its editor restores placeholders after the cache captured them
]
# OpenTelemetry: with an OTLP/HTTP endpoint (a collector's base URL; /v1/traces is added), one span per proxied
# request, built off the request path (observability/otel.py). Unset: the stage is not even in the list.
OTEL_EXPORTER_OTLP_ENDPOINT = env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default="")
OTEL_EXPORTER_OTLP_HEADERS = {
    unquote(name.strip()): unquote(value.strip())
    for name, _, value in (
        pair.partition("=") for pair in env.str("OTEL_EXPORTER_OTLP_HEADERS", default="").split(",") if "=" in pair
    )
}
OTEL_EXPORTER_OTLP_TIMEOUT = env.float("OTEL_EXPORTER_OTLP_TIMEOUT", default=10000.0) / 1000  # ms, as the spec has it
OTEL_BSP_SCHEDULE_DELAY = env.float("OTEL_BSP_SCHEDULE_DELAY", default=5000.0)  # ms between batches
OTEL_SERVICE_NAME = env.str("OTEL_SERVICE_NAME", default="ingate")
if OTEL_EXPORTER_OTLP_ENDPOINT:
    INGATE_PROXY_STAGES.append("observability.otel.Tracing")
# Where the proxy hands each finished request's record (a dotted path to a class with submit(record)).
INGATE_RECORD_SINK = env.str("INGATE_RECORD_SINK", default="observability.pipeline.RecordPipeline")
# The record writer: rows per insert, seconds between flushes (records reach the dashboard within this), the
# most records held in memory while the database (and Redis) are unreachable, and how long an entry read
# from the Redis stream by a writer that died waits before another writer takes it over.
INGATE_RECORD_BATCH_SIZE = env.int("INGATE_RECORD_BATCH_SIZE", default=500)
INGATE_RECORD_FLUSH_SECONDS = env.float("INGATE_RECORD_FLUSH_SECONDS", default=0.2)
INGATE_RECORD_MAX_PENDING = env.int("INGATE_RECORD_MAX_PENDING", default=200_000)
INGATE_RECORD_CLAIM_SECONDS = env.float("INGATE_RECORD_CLAIM_SECONDS", default=30.0)
INGATE_RECORD_STREAM = env.str("INGATE_RECORD_STREAM", default="ingate:records")
# The most records one CSV/JSONL export of the logs streams (the rest is cut; the response says so).
INGATE_EXPORT_MAX_ROWS = env.int("INGATE_EXPORT_MAX_ROWS", default=100_000)
# Who inserts records: "worker" (gateway processes only put them on the Redis stream; Celery workers price
# nothing and insert: no database work competes with the proxy for the CPU) or "gateway" (a thread in each
# gateway process inserts). Without Redis it is always "gateway".
INGATE_RECORD_INGEST = env.str("INGATE_RECORD_INGEST", default="worker") if REDIS_URL else "gateway"
# Days of request records an org keeps unless its observability settings say otherwise.
INGATE_RECORD_RETENTION_DAYS = env.int("INGATE_RECORD_RETENTION_DAYS", default=30)

# Prompt labels only these org roles may move (others: members and up).
INGATE_PROMPT_PROTECTED_LABELS = env.list("INGATE_PROMPT_PROTECTED_LABELS", default=["production"])
INGATE_PROMPT_PROTECTED_ROLES = env.list("INGATE_PROMPT_PROTECTED_ROLES", default=["admin", "owner"])

# How often budgets are reconciled against recorded spend (celery beat; without Redis, the embedded writer).
INGATE_BUDGET_RECONCILE_SECONDS = env.float("INGATE_BUDGET_RECONCILE_SECONDS", default=60.0)

# How often the bucket export looks for orgs whose next hours are due (beat; without Redis, the record writer).
INGATE_STORAGE_EXPORT_SECONDS = env.float("INGATE_STORAGE_EXPORT_SECONDS", default=300.0)
# An org's bucket endpoint may be a private or loopback address (a MinIO next to Ingate) only when this is set.
INGATE_STORAGE_ALLOW_PRIVATE_ENDPOINTS = env.bool("INGATE_STORAGE_ALLOW_PRIVATE_ENDPOINTS", default=False)
# Webhooks (tenancy/webhooks/). Endpoints on private, loopback, link-local or multicast addresses are refused
# unless this is on (a receiver inside your own network; tests).
INGATE_WEBHOOK_ALLOW_PRIVATE = env.bool("INGATE_WEBHOOK_ALLOW_PRIVATE", default=False)
# Seconds between a failed attempt and the next: about a day in all, then the delivery has failed.
INGATE_WEBHOOK_RETRY_SCHEDULE = [
    float(s)
    for s in env.list(
        "INGATE_WEBHOOK_RETRY_SCHEDULE", default=["30", "120", "600", "1800", "3600", "10800", "21600", "43200"]
    )
]
INGATE_WEBHOOK_TIMEOUT = env.float("INGATE_WEBHOOK_TIMEOUT", default=10.0)
# An endpoint whose deliveries all failed for this long (and one ran out of retries) is disabled.
INGATE_WEBHOOK_DISABLE_AFTER = env.float("INGATE_WEBHOOK_DISABLE_AFTER", default=20 * 3600.0)
# How often due retries are looked for (celery beat; without Redis, the gateway's webhook thread).
INGATE_WEBHOOK_SWEEP_SECONDS = env.float("INGATE_WEBHOOK_SWEEP_SECONDS", default=15.0)
# Days an event and its delivery log are kept.
INGATE_WEBHOOK_LOG_DAYS = env.int("INGATE_WEBHOOK_LOG_DAYS", default=30)

CELERY_BEAT_SCHEDULE = {
    # Drops expired record partitions (PostgreSQL), deletes rows past an org's retention, prepares partitions.
    "records-retention": {"task": "observability.enforce_retention", "schedule": 3600.0},
    # Gateways ask for ingestion as they stream records; this also picks up what a dead worker left behind.
    "records-ingest": {"task": "observability.ingest_records", "schedule": 10.0},
    # Eval runs whose worker died mid-run are taken up again (or failed after INGATE_EVAL_MAX_ATTEMPTS).
    "evals-resume": {"task": "evals.resume_stalled", "schedule": env.float("INGATE_EVAL_RESUME_SECONDS", default=15.0)},
    # Budgets: spend recomputed from the records, drift against the limits counters logged, threshold alerts recorded.
    "budgets-reconcile": {"task": "observability.reconcile_budgets", "schedule": INGATE_BUDGET_RECONCILE_SECONDS},
    # Each org's own bucket: the hours due (hourly by default, per org) written as Parquet (observability/export).
    "storage-export": {"task": "observability.export_storage", "schedule": INGATE_STORAGE_EXPORT_SECONDS},
    # Webhooks: retries that are due, budget events not yet sent, deliveries a dead worker left.
    "webhooks-deliver-due": {"task": "tenancy.webhooks_deliver_due", "schedule": INGATE_WEBHOOK_SWEEP_SECONDS},
    "webhooks-prune": {"task": "tenancy.webhooks_prune", "schedule": 3600.0},
}

# Eval runs: at most this many calls in flight per run, and targets per run; a running run whose worker has
# not beaten for INGATE_EVAL_STALL_SECONDS is taken up by another worker.
INGATE_EVAL_MAX_CONCURRENCY = env.int("INGATE_EVAL_MAX_CONCURRENCY", default=16)
INGATE_EVAL_MAX_TARGETS = env.int("INGATE_EVAL_MAX_TARGETS", default=8)
INGATE_EVAL_HEARTBEAT_SECONDS = env.float("INGATE_EVAL_HEARTBEAT_SECONDS", default=5.0)
INGATE_EVAL_STALL_SECONDS = env.float("INGATE_EVAL_STALL_SECONDS", default=60.0)
INGATE_EVAL_MAX_ATTEMPTS = env.int("INGATE_EVAL_MAX_ATTEMPTS", default=3)
# Largest dataset file an import takes (it is parsed in memory, all of it, before anything is stored).
INGATE_EVAL_MAX_IMPORT_BYTES = env.int("INGATE_EVAL_MAX_IMPORT_BYTES", default=50 * 1024 * 1024)

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "ingate.logging.RedactSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
