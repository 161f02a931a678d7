"""The provider registry and route detection: every provider Ingate knows, as data, and the one table
that maps a request path to a provider. Pure Python (no Django), so settings can read it too."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    name: str
    label: str
    base_url: str  # default upstream; INGATE_UPSTREAM_<NAME> or a stored credential's base_url replaces it
    auth: str  # how the upstream wants its key: bearer | x-api-key | api-key | x-goog-api-key | none
    format: str  # the wire format family it speaks (proxy/formats): openai | anthropic | gemini | ollama
    env_key: str = ""  # instance-wide credential from the environment, as the provider's own SDK names it
    env_base_url: str = ""  # the SDK's own variable for the upstream address, where it has one
    compatible: bool = False  # OpenAI-compatible: reached by name, its base URL already ends in the API version
    needs_secret: bool = True
    # Accepts stream_options.include_usage on chat completions: the gateway asks for usage on streams whose
    # client did not, and hides the extra chunk from the client (providers that reject unknown fields don't).
    stream_usage_option: bool = False


_BUILTIN = [
    ProviderSpec(
        "openai", "OpenAI", "https://api.openai.com", "bearer", "openai", "OPENAI_API_KEY", stream_usage_option=True
    ),
    ProviderSpec("anthropic", "Anthropic", "https://api.anthropic.com", "x-api-key", "anthropic", "ANTHROPIC_API_KEY"),
    # Azure has no global endpoint: each resource has its own (AZURE_OPENAI_ENDPOINT or the credential's base URL).
    ProviderSpec(
        "azure",
        "Azure OpenAI",
        "",
        "api-key",
        "openai",
        "AZURE_OPENAI_API_KEY",
        "AZURE_OPENAI_ENDPOINT",
        stream_usage_option=True,
    ),
    ProviderSpec(
        "gemini",
        "Google Gemini",
        "https://generativelanguage.googleapis.com",
        "x-goog-api-key",
        "gemini",
        "GEMINI_API_KEY",
    ),
    ProviderSpec(
        "ollama", "Ollama", "http://127.0.0.1:11434", "bearer", "ollama", "", "OLLAMA_HOST", needs_secret=False
    ),
]

_STREAM_USAGE = {"groq", "deepseek", "xai", "together", "fireworks"}
_COMPATIBLE = [
    ("groq", "Groq", "https://api.groq.com/openai/v1"),
    ("mistral", "Mistral", "https://api.mistral.ai/v1"),
    ("together", "Together AI", "https://api.together.xyz/v1"),
    ("fireworks", "Fireworks AI", "https://api.fireworks.ai/inference/v1"),
    ("deepseek", "DeepSeek", "https://api.deepseek.com/v1"),
    ("xai", "xAI", "https://api.x.ai/v1"),
    ("openrouter", "OpenRouter", "https://openrouter.ai/api/v1"),
    ("cerebras", "Cerebras", "https://api.cerebras.ai/v1"),
    ("perplexity", "Perplexity", "https://api.perplexity.ai"),
]

REGISTRY: dict[str, ProviderSpec] = {spec.name: spec for spec in _BUILTIN}
REGISTRY.update(
    (
        name,
        ProviderSpec(
            name,
            label,
            url,
            "bearer",
            "openai",
            f"{name.upper()}_API_KEY",
            compatible=True,
            stream_usage_option=name in _STREAM_USAGE,
        ),
    )
    for name, label, url in _COMPATIBLE
)

BUILTIN_PROVIDERS = tuple(spec.name for spec in _BUILTIN)
COMPATIBLE_PROVIDERS: dict[str, str] = {name: url for name, _, url in _COMPATIBLE}
PROVIDER_NAMES = frozenset(REGISTRY)

# The spec an org's custom OpenAI-compatible endpoint (a stored credential with its own name) uses.
CUSTOM_COMPATIBLE = ProviderSpec("custom", "OpenAI-compatible", "", "bearer", "openai", compatible=True)


# --- detection -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    provider: str  # a REGISTRY name, or an org's custom provider name (known only after the key is checked)
    endpoint: str  # what the request does, for records: chat.completions, messages, generateContent, …
    path: str  # the path to append to the upstream base URL
    model: str = ""  # when the path names it (Gemini model, Azure deployment)
    named: bool = False  # chosen by X-Ingate-Provider or /p/<name>/ rather than by the path


# OpenAI-style paths after the version segment -> endpoint name (also used for Azure and named providers).
_OPENAI_ENDPOINTS = {
    "chat/completions": "chat.completions",
    "completions": "completions",
    "embeddings": "embeddings",
    "responses": "responses",
    "moderations": "moderations",
    "models": "models",
}
# Endpoints whose requests and answers are in OpenAI's format whichever provider serves them.
OPENAI_FORMAT_ENDPOINTS = frozenset({"chat.completions", "completions", "embeddings", "responses"})
# First segment after /v1/ for paths with ids or sub-resources.
_OPENAI_FAMILIES = {"responses", "audio", "images", "models"}

_ANTHROPIC_ENDPOINTS = {
    "messages": "messages",
    "messages/count_tokens": "messages.count_tokens",
    "messages/batches": "messages.batches",
    "complete": "complete",
}

_OLLAMA_ENDPOINTS = {"chat", "generate", "embed", "embeddings", "tags", "show", "ps", "version"}

GEMINI_VERBS = frozenset(
    {"generateContent", "streamGenerateContent", "countTokens", "embedContent", "batchEmbedContents"}
)

# Prefixes Ingate itself serves; an X-Ingate-Provider header never claims them.
_OWN_PREFIXES = ("/ingate/", "/admin/", "/static/")


def openai_endpoint(rest: str) -> str:
    """Endpoint name for an OpenAI-style path below the version segment (`chat/completions` …)."""
    hit = _OPENAI_ENDPOINTS.get(rest)
    if hit:
        return hit
    family = rest.split("/", 1)[0]
    return family if family in _OPENAI_FAMILIES else (family or "other")


def _gemini(path: str, rest: str) -> Route:
    # rest: "models/gemini-2.0-flash:generateContent", "models", "models/gemini-2.0-flash", …
    if rest.startswith("openai/"):  # Gemini's OpenAI-compatible API speaks OpenAI's format
        return Route("gemini", openai_endpoint(rest[len("openai/") :]), path)
    model, _, verb = rest.removeprefix("models/").partition(":")
    return Route("gemini", verb or "models", path, model if rest.startswith("models/") else "")


def _strip_version(rest: str) -> str:
    """`/v1/chat/completions` -> `/chat/completions`: a named provider's base URL already carries its version."""
    return rest[3:] if rest == "/v1" or rest.startswith("/v1/") else rest


def named_route(name: str, path: str) -> Route:
    """Route for `X-Ingate-Provider: name` on `path`, or for `/p/name/<path>`."""
    name = name.strip().lower()
    spec = REGISTRY.get(name)
    if spec is not None and not spec.compatible:
        route = detect_path(path, anthropic_version=name == "anthropic")
        if route is not None and route.provider == name:
            return Route(name, route.endpoint, route.path, route.model, named=True)
        if route is not None and route.provider == "openai" and route.endpoint in OPENAI_FORMAT_ENDPOINTS:
            # The provider's OpenAI-compatible API (Anthropic's, Ollama's /v1/chat/completions): OpenAI's format.
            return Route(name, route.endpoint, path, named=True)
        return Route(name, "other", path, named=True)
    rest = _strip_version(path)
    return Route(name, openai_endpoint(rest.lstrip("/")), rest, named=True)


def detect_path(path: str, *, anthropic_version: bool) -> Route | None:
    """The provider a path belongs to, by the table above; None when the path is not a provider path."""
    head, _, rest = path[1:].partition("/")
    if head == "v1":
        if rest.startswith("models/") and ":" in rest and rest.rpartition(":")[2] in GEMINI_VERBS:
            return _gemini(path, rest)  # google-genai's /v1/models/{model}:verb
        endpoint = _ANTHROPIC_ENDPOINTS.get(rest)
        if endpoint is None and rest.startswith("messages/batches/"):
            endpoint = "messages.batches"
        if endpoint is not None:
            return Route("anthropic", endpoint, path)
        endpoint = openai_endpoint(rest)
        if anthropic_version and endpoint == "models":
            return Route("anthropic", "models", path)
        return Route("openai", endpoint, path)
    if head in ("v1beta", "v1alpha"):
        return _gemini(path, rest)
    if head == "openai":
        if rest.startswith("deployments/"):
            deployment, _, operation = rest[len("deployments/") :].partition("/")
            return Route("azure", openai_endpoint(operation), path, deployment)
        if rest.startswith("v1/"):
            return Route("azure", openai_endpoint(rest[3:]), path)
        return None
    if head == "api":
        return Route("ollama", rest if rest in _OLLAMA_ENDPOINTS else "other", path)
    return None


def detect(path: str, provider_header: str | None, anthropic_version: bool) -> Route | None:
    """The route for a request, or None when it is not for the proxy (Django serves it).

    `/p/<name>/…` and `X-Ingate-Provider: <name>` name the provider outright; otherwise the path decides.
    """
    if path.startswith("/p/"):
        name, _, rest = path[3:].partition("/")
        return named_route(name, "/" + rest) if name else None
    if provider_header:
        if path.startswith(_OWN_PREFIXES):
            return None
        return named_route(provider_header, path)
    return detect_path(path, anthropic_version=anthropic_version)


# --- names other modules share: one definition each ------------------------------------------------


class AuthStyle(StrEnum):
    """How an upstream wants its key (`ProviderSpec.auth`; an org's stored credential may choose another)."""

    BEARER = "bearer"
    X_API_KEY = "x-api-key"
    API_KEY = "api-key"
    GOOG = "x-goog-api-key"
    NONE = "none"


# The header each style puts the key in (`Authorization: Bearer <key>` for BEARER; NONE sends no key).
AUTH_HEADERS: dict[str, str] = {
    AuthStyle.BEARER: "authorization",
    AuthStyle.X_API_KEY: "x-api-key",
    AuthStyle.API_KEY: "api-key",
    AuthStyle.GOOG: "x-goog-api-key",
}

# The `provider` of an org's stored credential for its own OpenAI-compatible endpoint (CUSTOM_COMPATIBLE).
OPENAI_COMPATIBLE = "openai_compatible"
