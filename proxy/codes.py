"""The codes of the errors the gateway answers itself (`ProxyError.code`): clients read them in the error body
and records keep them as `error_type`, so a code, once out, keeps its spelling."""

from enum import StrEnum


class ErrorCode(StrEnum):
    # the request, before any key is checked
    INVALID_PATH = "invalid_path"
    REQUEST_TOO_LARGE = "request_too_large"
    # the gateway key
    MISSING_GATEWAY_KEY = "missing_gateway_key"
    INVALID_GATEWAY_KEY = "invalid_gateway_key"
    MISSING_SCOPE = "missing_scope"
    # the upstream and its credential
    UNKNOWN_PROVIDER = "unknown_provider"
    UNKNOWN_ROUTE = "unknown_route"
    ROUTE_UNAVAILABLE = "route_unavailable"
    # budgets and rate limits (proxy/limits)
    BUDGET_EXCEEDED = "budget_exceeded"
    RATE_LIMITED = "rate_limited"
    BUDGET_UNPRICED_MODEL = "budget_unpriced_model"
    LIMITS_UNAVAILABLE = "limits_unavailable"
    GUARDRAIL_BLOCKED = "guardrail_blocked"  # a guardrail policy refused the request or the answer
    INVALID_CACHE_HEADER = "invalid_cache_header"  # a fail-closed budget or limit cannot be checked (Redis down)  # every target of a route failed or is paused (circuit open)
    MISSING_CREDENTIAL = "missing_credential"
    # the body, and a registry prompt rendered into it (X-Ingate-Prompt)
    INVALID_JSON = "invalid_json"
    INVALID_PROMPT_REFERENCE = "invalid_prompt_reference"
    UNKNOWN_PROMPT = "unknown_prompt"
    INVALID_PROMPT_VARIABLES = "invalid_prompt_variables"
    PROMPT_RENDER_ERROR = "prompt_render_error"
    # a request sent to a target that speaks another wire format (proxy/formats/translate/)
    UNTRANSLATABLE_PARAMETER = "untranslatable_parameter"
    INVALID_REQUEST = "invalid_request"
    UNTRANSLATABLE_RESPONSE = "untranslatable_response"
    # the way there and back
    UPSTREAM_UNREACHABLE = "upstream_unreachable"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    # Ingate itself
    DATABASE_UNAVAILABLE = "database_unavailable"
    GATEWAY_UNAVAILABLE = "gateway_unavailable"
