"""The route table: which provider, endpoint and upstream path each request path means."""

import pytest

from proxy.credentials import Upstream
from proxy.headers import readable_accept_encoding, split_query
from proxy.providers import REGISTRY, detect


@pytest.mark.parametrize(
    "path, header, anthropic_version, expected",
    [
        ("/v1/chat/completions", None, False, ("openai", "chat.completions", "/v1/chat/completions", "")),
        ("/v1/completions", None, False, ("openai", "completions", "/v1/completions", "")),
        ("/v1/embeddings", None, False, ("openai", "embeddings", "/v1/embeddings", "")),
        ("/v1/responses", None, False, ("openai", "responses", "/v1/responses", "")),
        ("/v1/responses/resp_123", None, False, ("openai", "responses", "/v1/responses/resp_123", "")),
        ("/v1/audio/transcriptions", None, False, ("openai", "audio", "/v1/audio/transcriptions", "")),
        ("/v1/images/generations", None, False, ("openai", "images", "/v1/images/generations", "")),
        ("/v1/moderations", None, False, ("openai", "moderations", "/v1/moderations", "")),
        ("/v1/models", None, False, ("openai", "models", "/v1/models", "")),
        (
            "/v1/models/ft:gpt-4o-mini:acme::abc",
            None,
            False,
            ("openai", "models", "/v1/models/ft:gpt-4o-mini:acme::abc", ""),
        ),
        ("/v1/files", None, False, ("openai", "files", "/v1/files", "")),
        ("/v1/messages", None, True, ("anthropic", "messages", "/v1/messages", "")),
        (
            "/v1/messages/count_tokens",
            None,
            True,
            ("anthropic", "messages.count_tokens", "/v1/messages/count_tokens", ""),
        ),
        ("/v1/messages/batches", None, True, ("anthropic", "messages.batches", "/v1/messages/batches", "")),
        (
            "/v1/messages/batches/msgbatch_1",
            None,
            True,
            ("anthropic", "messages.batches", "/v1/messages/batches/msgbatch_1", ""),
        ),
        ("/v1/complete", None, True, ("anthropic", "complete", "/v1/complete", "")),
        ("/v1/models", None, True, ("anthropic", "models", "/v1/models", "")),
        ("/v1/models/claude-haiku-4-5", None, True, ("anthropic", "models", "/v1/models/claude-haiku-4-5", "")),
        (
            "/openai/deployments/prod-4o/chat/completions",
            None,
            False,
            ("azure", "chat.completions", "/openai/deployments/prod-4o/chat/completions", "prod-4o"),
        ),
        ("/openai/v1/responses", None, False, ("azure", "responses", "/openai/v1/responses", "")),
        ("/api/chat", None, False, ("ollama", "chat", "/api/chat", "")),
        ("/api/generate", None, False, ("ollama", "generate", "/api/generate", "")),
        ("/api/embed", None, False, ("ollama", "embed", "/api/embed", "")),
        ("/api/embeddings", None, False, ("ollama", "embeddings", "/api/embeddings", "")),
        ("/api/tags", None, False, ("ollama", "tags", "/api/tags", "")),
        ("/api/show", None, False, ("ollama", "show", "/api/show", "")),
        (
            "/v1beta/models/gemini-2.0-flash:generateContent",
            None,
            False,
            ("gemini", "generateContent", "/v1beta/models/gemini-2.0-flash:generateContent", "gemini-2.0-flash"),
        ),
        (
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
            None,
            False,
            (
                "gemini",
                "streamGenerateContent",
                "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
                "gemini-2.0-flash",
            ),
        ),
        (
            "/v1/models/gemini-2.5-pro:countTokens",
            None,
            False,
            ("gemini", "countTokens", "/v1/models/gemini-2.5-pro:countTokens", "gemini-2.5-pro"),
        ),
        (
            "/v1/models/text-embedding-004:embedContent",
            None,
            False,
            ("gemini", "embedContent", "/v1/models/text-embedding-004:embedContent", "text-embedding-004"),
        ),
        ("/v1/chat/completions", "groq", False, ("groq", "chat.completions", "/chat/completions", "")),
        ("/v1/chat/completions", "Mistral", False, ("mistral", "chat.completions", "/chat/completions", "")),
        ("/p/perplexity/chat/completions", None, False, ("perplexity", "chat.completions", "/chat/completions", "")),
        ("/p/openrouter/v1/models", None, False, ("openrouter", "models", "/models", "")),
        ("/p/my-vllm/v1/embeddings", None, False, ("my-vllm", "embeddings", "/embeddings", "")),
        ("/v1/messages", "anthropic", False, ("anthropic", "messages", "/v1/messages", "")),
    ],
)
def test_route_table(path, header, anthropic_version, expected):
    route = detect(path, header, anthropic_version)
    assert (route.provider, route.endpoint, route.path, route.model) == expected


@pytest.mark.parametrize("path", ["/", "/admin/", "/ingate/health", "/static/x.css", "/favicon.ico", "/openai/other"])
def test_paths_that_are_not_provider_paths_go_to_django(path):
    assert detect(path, None, False) is None


def test_a_provider_header_never_claims_ingates_own_pages():
    assert detect("/ingate/api/v1/me/", "groq", False) is None
    assert detect("/admin/", "openai", False) is None


def test_every_compatible_provider_has_an_https_default_and_an_env_key():
    for spec in REGISTRY.values():
        if spec.compatible:
            assert spec.base_url.startswith("https://") and spec.env_key == f"{spec.name.upper()}_API_KEY"


@pytest.mark.parametrize(
    "base, path, query, expected",
    [
        ("http://h:1", "/v1/chat/completions", "", "http://h:1/v1/chat/completions"),
        ("http://h:1/v1", "/v1/chat/completions", "", "http://h:1/v1/chat/completions"),
        ("http://h:1/v1/", "/v1/chat/completions", "a=1", "http://h:1/v1/chat/completions?a=1"),
        ("https://api.groq.com/openai/v1", "/chat/completions", "", "https://api.groq.com/openai/v1/chat/completions"),
        ("http://h:1/myv1", "/v1/models", "", "http://h:1/myv1/v1/models"),
        ("127.0.0.1:11434", "/api/chat", "", "http://127.0.0.1:11434/api/chat"),
        ("0.0.0.0:11434", "/api/tags", "", "http://127.0.0.1:11434/api/tags"),
    ],
)
def test_upstream_url_joins_base_and_path_without_doubling_the_version(base, path, query, expected):
    upstream = Upstream.build("x", REGISTRY["openai"], base, "secret")
    assert upstream.url(path, query) == expected


def test_azure_api_version_is_added_only_when_the_client_sent_none():
    upstream = Upstream.build("azure", REGISTRY["azure"], "https://r.openai.azure.com", "k", api_version="2024-10-21")
    path = "/openai/deployments/d/chat/completions"
    assert upstream.url(path, "").endswith("?api-version=2024-10-21")
    assert upstream.url(path, "api-version=2025-01-01").endswith("?api-version=2025-01-01")
    assert "api-version" not in upstream.url("/openai/v1/responses", "")


@pytest.mark.parametrize(
    "accepted, forwarded",
    [
        ("gzip, deflate, br, zstd", "gzip, deflate"),
        ("br", ""),
        ("identity", "identity"),
        ("gzip;q=1.0, *;q=0", "gzip;q=1.0"),
    ],
)
def test_only_encodings_the_gateway_can_read_are_asked_of_the_upstream(accepted, forwarded):
    assert readable_accept_encoding(accepted) == forwarded


def test_a_gateway_key_in_the_query_is_removed_and_a_provider_key_kept():
    gateway = "sk-ingate-" + "a" * 52
    assert split_query(f"alt=sse&key={gateway}".encode()) == ("alt=sse", gateway)
    assert split_query(b"key=AIza-own&alt=sse") == ("key=AIza-own&alt=sse", "AIza-own")
    assert split_query(b"api-version=2024-10-21") == ("api-version=2024-10-21", None)
