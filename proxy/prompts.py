"""Prompts used through the proxy: `X-Ingate-Prompt: <namespace>/<name>@<label or version>` and its variables
(`X-Ingate-Prompt-Variables` JSON header, or an `ingate.variables` field in the body, removed before
forwarding). The rendered messages and the version's parameters go into the body; parameters the client
sent win. Label resolution is cached; a label move clears the cache in every process (invalidation.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from prompts import selectors
from prompts.render import RenderError, for_provider, render

from .cache import LoadingCache
from .db import DatabaseThreads
from .errors import ProxyError


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
        raise ProxyError(400, "invalid_prompt_reference",
                         f"X-Ingate-Prompt must look like <namespace>/<name>@<label or version>, not {ref!r}.")
    return namespace, name, selector


class PromptCache:
    def __init__(self, db: DatabaseThreads, *, ttl: float):
        self._db = db
        self._cache: LoadingCache[tuple, Version] = LoadingCache(self._fetch, ttl=ttl, miss_ttl=min(ttl, 5.0))

    async def version(self, org_id: int, ref: str) -> Version:
        namespace, name, selector = parse_ref(ref)
        found = await self._cache.get((org_id, namespace, name, selector))
        if found is None:
            raise ProxyError(400, "unknown_prompt", f"No prompt {namespace}/{name}@{selector} in this organization.")
        return found

    async def _fetch(self, key: tuple) -> Version | None:
        row = await self._db.run(selectors.resolve, *key)
        return Version(**row) if row else None

    def invalidate(self) -> None:
        self._cache.invalidate()


def apply(version: Version, body: dict[str, Any], header_variables: bytes | None, shape: str) -> dict[str, Any]:
    """The request body with the prompt rendered in. Raises ProxyError 400 for bad or missing variables."""
    body = dict(body)
    extra = body.pop("ingate", None)
    variables: Any = {}
    if header_variables:
        try:
            variables = orjson.loads(header_variables)
        except ValueError:
            raise ProxyError(400, "invalid_prompt_variables", "X-Ingate-Prompt-Variables is not valid JSON.") from None
    elif isinstance(extra, dict):
        variables = extra.get("variables") or {}
    if not isinstance(variables, dict):
        raise ProxyError(400, "invalid_prompt_variables", "Prompt variables must be a JSON object.")
    try:
        rendered = render(version.messages, version.template, version.variables, variables)
    except RenderError as exc:
        raise ProxyError(400, "prompt_render_error", str(exc)) from None
    fields = for_provider(rendered, shape)
    merged = {**version.parameters, **({"model": version.model} if version.model else {}), **body}
    prompt_messages = fields.get("messages") or [{"role": "user", "content": rendered.text}]
    merged["messages"] = prompt_messages + list(body.get("messages") or [])
    if "system" in fields:
        client_system = body.get("system")
        merged["system"] = fields["system"] + (f"\n\n{client_system}" if isinstance(client_system, str) and client_system else "")
    return merged
