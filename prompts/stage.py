"""The prompt stage of the proxy's request path (proxy/stages.py): `X-Ingate-Prompt:
<namespace>/<name>@<label or version>` and its variables (`X-Ingate-Prompt-Variables` JSON header, or an
`ingate.variables` field in the body, removed before forwarding). The rendered messages and the version's
parameters go into the body in the request's own wire format; parameters the client sent win. Label resolution
is cached; a label move clears the cache in every process (proxy/invalidation.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from proxy import invalidation
from proxy.cache import LoadingCache
from proxy.codes import ErrorCode
from proxy.errors import ProxyError
from proxy.exchange import Exchange
from proxy.formats import WireFormat
from proxy.stages import Stage

from . import selectors
from .render import RenderError, render

HEADER = b"x-ingate-prompt"
VARIABLES_HEADER = b"x-ingate-prompt-variables"


@dataclass(frozen=True, slots=True)
class Version:
    id: int
    number: int
    messages: list
    template: str
    variables: dict
    model: str
    parameters: dict


def parse_ref(ref: str) -> tuple[str, str, str]:
    path, _, selector = ref.strip().partition("@")
    namespace, _, name = path.strip("/").rpartition("/")
    if not namespace or not name or not selector:
        raise ProxyError(
            400,
            ErrorCode.INVALID_PROMPT_REFERENCE,
            f"X-Ingate-Prompt must look like <namespace>/<name>@<label or version>, not {ref!r}.",
        )
    return namespace, name, selector


class PromptStage(Stage):
    """Renders a registry prompt into the request when it names one; costs a header lookup otherwise."""

    def __init__(self, app):
        super().__init__(app)
        ttl = app.key_cache_ttl
        self._cache: LoadingCache[tuple, Version] = LoadingCache(self._fetch, ttl=ttl, miss_ttl=min(ttl, 5.0))

    async def request(self, ex: Exchange) -> None:
        ref = ex.incoming.ingate.get(HEADER)
        if not ref:
            return
        version = await self.version(ex.principal.org_id, ref.decode("latin-1"))
        body = await ex.body()
        try:
            parsed = orjson.loads(body) if body else {}
        except ValueError as exc:
            raise ProxyError(400, ErrorCode.INVALID_JSON, f"The request body is not valid JSON: {exc}.") from None
        if not isinstance(parsed, dict):
            raise ProxyError(400, ErrorCode.INVALID_JSON, "The request body must be a JSON object to use a prompt.")
        ex.record.prompt_version_id = version.id
        merged = apply(version, parsed, ex.incoming.ingate.get(VARIABLES_HEADER), ex.fmt)
        if "json" not in ex.incoming.content_type:
            ex.incoming.content_type = "application/json"
            ex.incoming.forward.append((b"content-type", b"application/json"))
        ex.replace_body(orjson.dumps(merged), merged)

    async def version(self, org_id: int, ref: str) -> Version:
        namespace, name, selector = parse_ref(ref)
        found = await self._cache.get((org_id, namespace, name, selector))
        if found is None:
            raise ProxyError(
                400, ErrorCode.UNKNOWN_PROMPT, f"No prompt {namespace}/{name}@{selector} in this organization."
            )
        return found

    async def _fetch(self, key: tuple) -> Version | None:
        row = await self.app.db.run(selectors.resolve, *key)
        return Version(**row) if row else None

    def invalidate(self, kind: str, value: str) -> None:
        if kind not in invalidation.KINDS - {invalidation.PROMPTS}:
            self._cache.invalidate()


def apply(version: Version, body: dict[str, Any], header_variables: bytes | None, fmt: WireFormat) -> dict[str, Any]:
    """The request body with the prompt rendered in. Raises ProxyError 400 for bad or missing variables."""
    body = dict(body)
    extra = body.pop("ingate", None)
    variables: Any = {}
    if header_variables:
        try:
            variables = orjson.loads(header_variables)
        except ValueError:
            raise ProxyError(
                400, ErrorCode.INVALID_PROMPT_VARIABLES, "X-Ingate-Prompt-Variables is not valid JSON."
            ) from None
    elif isinstance(extra, dict):
        variables = extra.get("variables") or {}
    if not isinstance(variables, dict):
        raise ProxyError(400, ErrorCode.INVALID_PROMPT_VARIABLES, "Prompt variables must be a JSON object.")
    try:
        rendered = render(version.messages, version.template, version.variables, variables)
    except RenderError as exc:
        raise ProxyError(400, ErrorCode.PROMPT_RENDER_ERROR, str(exc)) from None
    merged = {**version.parameters, **({"model": version.model} if version.model else {}), **body}
    return fmt.with_prompt(merged, rendered.messages, rendered.text)
