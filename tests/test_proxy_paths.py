"""A provider path that could leave the upstream's base URL (dot segments, encoded slashes, a '?' hidden in a
segment, odd characters in a deployment or model name) is refused in the provider's error shape and never
reaches the upstream; ordinary paths, models with dots and colons included, still go through untouched."""

import http.client
import json
from urllib.parse import urlsplit

import pytest
from asgiref.sync import async_to_sync

from proxy import internal
from tenancy.tests.factories import make_credential

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
MESSAGE = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
GEMINI = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
OLLAMA = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "stream": False}


# family: (template with {} where the client's piece goes, extra headers, error shape)
FAMILIES = {
    "openai": ("/v1/chat/{}", {}, "openai"),
    "anthropic": ("/v1/messages/batches/{}", {"anthropic-version": "2023-06-01"}, "anthropic"),
    "azure": ("/openai/deployments/{}/chat/completions?api-version=2024-10-21", {}, "openai"),
    "gemini": ("/v1beta/models/{}:generateContent", {}, "gemini"),
    "ollama": ("/api/{}", {}, "ollama"),
    "named by path": ("/p/groq/v1/chat/{}", {}, "openai"),
    "named by header": ("/v1/chat/{}", {"x-ingate-provider": "mistral"}, "openai"),
    "org custom provider": ("/p/vllm/v1/chat/{}", {}, "openai"),
    "anthropic by path": ("/p/anthropic/v1/messages/batches/{}", {}, "anthropic"),
}

# What a client may put in the path, exactly as it goes on the wire (no client-side normalising).
FORMS = {
    "encoded dot segments": "%2e%2e/%2e%2e/%2e%2e/admin",
    "upper-case encoded dot segments": "%2E%2E/%2E%2E/admin",
    "half-encoded dot segment": ".%2e/admin",
    "literal dot segments": "../../../admin",
    "single dot segment": "./admin",
    "encoded slashes": "..%2F..%2Fadmin",
    "encoded slash without dots": "gpt-4o%2fadmin",
    "encoded backslashes": "..%5C..%5Cadmin",
    "literal backslashes": "..\\..\\admin",
    "encoded query": "completions%3Finjected%3D1",
    "encoded fragment": "completions%23top",
    "encoded NUL": "gpt%00x",
    "encoded CR LF": "gpt%0d%0aX-Injected:%201",
    "encoded tab": "gpt%09x",
    "double-encoded dot segments": "%252e%252e/%252e%252e/admin",
    "double-encoded slash": "..%252F..%252Fadmin",
    "stray percent": "gpt%zz",
    "path parameter after dots": "..;/admin",
    "path parameter": "completions;jsessionid=1",
    "encoded space": "gpt%204o",
    "non-ASCII": "gpt-%C3%A9",
}


def send(gateway, target: str, headers: dict[str, str], body: dict | None = None, method: str = "POST"):
    """(status, parsed body) for `target` sent verbatim: http.client neither resolves '..' nor re-escapes."""
    address = urlsplit(gateway.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        connection.request(method, target, body=payload, headers={"content-type": "application/json", **headers})
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    return response.status, json.loads(data) if data else None


def refused_in_shape(shape: str, body) -> bool:
    if shape == "anthropic":
        return body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    if shape == "gemini":
        return body["error"]["code"] == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    if shape == "ollama":
        return isinstance(body["error"], str) and "path" in body["error"]
    return body["error"]["code"] == "invalid_path" and body["error"]["type"] == "invalid_request_error"


@pytest.fixture
def auth(gateway_key, fake):
    key, plaintext = gateway_key
    make_credential(key.org, "openai_compatible", name="vllm", secret="sk-vllm-local", base_url=fake.url + "/vllm/v1")
    return {"authorization": f"Bearer {plaintext}"}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_unsafe_path_form_is_refused_in_the_providers_shape_before_the_upstream(gateway, auth, fake, family):
    template, headers, shape = FAMILIES[family]
    wrong = {}
    for form, piece in FORMS.items():
        status, body = send(gateway, template.format(piece), {**auth, **headers}, CHAT)
        if status != 400 or not refused_in_shape(shape, body) or fake.requests:
            wrong[form] = (status, body, [r.path for r in fake.requests])
        fake.reset()
    assert wrong == {}
    records = gateway.wait_for_records(len(FORMS))
    assert {r.error_type for r in records} == {"invalid_path"}


def test_the_refusal_says_what_was_wrong_and_what_is_allowed(gateway, auth, fake):
    status, body = send(gateway, "/p/groq/v1/%2e%2e/%2e%2e/%2e%2e/admin", auth, CHAT)
    assert status == 400
    assert body["error"]["message"] == (
        "The request path has a dot segment ('..'). Ingate forwards only path segments made of letters, digits "
        "and . - _ ~ : @."
    )
    _, body = send(gateway, "/openai/deployments/..%2F..%2Fadmin/chat/completions", auth, CHAT)
    assert "encoded slash in the segment '../../admin'" in body["error"]["message"]
    _, body = send(gateway, "/v1/chat/completions%3Finjected%3D1", auth, CHAT)
    assert "'?' or '#' inside the segment 'completions?injected=1'" in body["error"]["message"]
    _, body = send(gateway, "/v1beta/models/%252e%252e:generateContent", auth, GEMINI)
    assert "once decoded (encoded twice" in body["error"]["message"]
    assert not fake.requests


def test_a_path_refusal_needs_no_gateway_key_and_costs_no_key_lookup(gateway, fake):
    # Checked before the key: nothing about the org or its credentials is looked at for such a path.
    status, body = send(gateway, "/v1/chat/%2e%2e/admin", {}, CHAT)
    assert status == 400 and body["error"]["code"] == "invalid_path"
    assert not fake.requests


@pytest.mark.parametrize(
    "target, headers, body, upstream_path, upstream_query",
    [
        ("/v1/chat/completions", {}, CHAT, "/v1/chat/completions", ""),
        ("/v1/messages", {"anthropic-version": "2023-06-01"}, MESSAGE, "/v1/messages", ""),
        (
            "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
            {},
            CHAT,
            "/openai/deployments/gpt-4o-mini/chat/completions",
            "api-version=2024-10-21",
        ),
        (
            "/v1beta/models/gemini-2.5-flash:generateContent",
            {},
            GEMINI,
            "/v1beta/models/gemini-2.5-flash:generateContent",
            "",
        ),
        (
            "/v1beta/models/gemini-2.0-flash-001:generateContent?alt=json",
            {},
            GEMINI,
            "/v1beta/models/gemini-2.0-flash-001:generateContent",
            "alt=json",
        ),
        ("/api/chat", {}, OLLAMA, "/api/chat", ""),
        ("/p/groq/v1/chat/completions", {}, CHAT, "/groq/v1/chat/completions", ""),
        ("/v1/chat/completions", {"x-ingate-provider": "mistral"}, CHAT, "/mistral/v1/chat/completions", ""),
        ("/p/vllm/v1/chat/completions", {}, CHAT, "/vllm/v1/chat/completions", ""),
        # An escaped character that needs no escaping is the same path: it goes upstream as the plain one.
        ("/v1/chat/completion%73", {}, CHAT, "/v1/chat/completions", ""),
    ],
    ids=[
        "openai",
        "anthropic",
        "azure deployment",
        "gemini model",
        "gemini model with query",
        "ollama model with colon",
        "named by path",
        "named by header",
        "org custom provider",
        "escaped plain character",
    ],
)
def test_ordinary_paths_of_every_family_still_reach_the_upstream(
    gateway, auth, fake, target, headers, body, upstream_path, upstream_query
):
    status, answer = send(gateway, target, {**auth, **headers}, body)
    assert status == 200, answer
    assert (fake.last_request.path, fake.last_request.query) == (upstream_path, upstream_query)


def test_model_ids_with_colons_and_dots_in_the_path_go_through(gateway, auth, fake):
    send(gateway, "/v1/models/ft:gpt-4o-mini-2024-07-18:acme::abc123", auth, method="GET")
    send(gateway, "/api/show", auth, {"model": "llama3.2:1b"})
    send(gateway, "/v1/models/claude-3.5-sonnet@20240620", auth, method="GET")
    assert [r.path for r in fake.requests] == [
        "/v1/models/ft:gpt-4o-mini-2024-07-18:acme::abc123",
        "/api/show",
        "/v1/models/claude-3.5-sonnet@20240620",
    ]


@pytest.mark.parametrize("provider", ["gemini", "azure"])
@pytest.mark.parametrize("model", ["../../admin", "x/../../admin", "gpt?injected=1", "gpt#x", ".hidden", "a b"])
def test_ingates_own_calls_refuse_a_model_name_that_would_change_the_path(
    gateway, gateway_key, fake, settings, provider, model
):
    # The playground and evals put a user-typed model into Gemini's and Azure's paths.
    settings.INGATE_AZURE_API_VERSION = "2024-10-21"
    key, _ = gateway_key
    answer = async_to_sync(internal.chat)(
        internal.Principal(org_id=key.org_id, org_slug=key.org.slug),
        provider,
        model,
        [{"role": "user", "content": "hi"}],
    )
    assert answer.status == 400 and not answer.ok
    assert "path" in answer.error
    assert not fake.requests
