"""The playground: several models answering one prompt side by side. What a column is given (free text, or a
prompt version rendered with variables), its answer streamed through the proxy's request path, and saving the
input as a dataset item or a new prompt version. Callers check who may do what, as for the other services."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from prompts import services as prompt_services
from prompts.models import Prompt, PromptVersion
from prompts.render import render as render_prompt
from proxy import internal
from tenancy.audit import Actor
from tenancy.models import Organization

from . import services
from .models import Dataset, DatasetVersion
from .transfer import clean_item


@dataclass(frozen=True, slots=True)
class Input:
    """What the page sends a column: a prompt version rendered with its variables, then the user message if one
    is written; or free text, an optional system prompt and a user message. `chat` is what a model is sent."""

    chat: list[dict]
    version: PromptVersion | None = None
    variables: dict = field(default_factory=dict)
    user: str = ""


@dataclass(frozen=True, slots=True)
class Column:
    """One column's call, as plain data for the event loop: the version's parameters under the column's own."""

    provider: str
    model: str
    chat: list[dict]
    parameters: dict
    prompt_version_id: int | None = None


def input_of(org: Organization, data: dict) -> Input:
    """The input the page sent; ValueError or RenderError (variables missing or mistyped) say what to fix."""
    user = str(data.get("user") or "").strip()
    if data.get("prompt_version"):
        version = PromptVersion.objects.filter(pk=data["prompt_version"], prompt__org=org).first()
        if version is None:
            raise ValueError("No such prompt version.")
        variables = data.get("variables") or {}
        if not isinstance(variables, dict):
            raise ValueError("Variables must be a JSON object.")
        rendered = render_prompt(version.messages, version.template, version.variables, variables)
        chat = rendered.chat()
        return Input(chat + ([{"role": "user", "content": user}] if user else []), version, variables, user)
    out = []
    if str(data.get("system") or "").strip():
        out.append({"role": "system", "content": str(data["system"])})
    if not user:
        raise ValueError("Write a message to send.")
    out.append({"role": "user", "content": user})
    return Input(out, user=user)


def column_of(org: Organization, data: dict) -> Column:
    """The call a column makes, checked before anything is sent: a model is named, the parameters are an
    object, and the provider will take the chat (NoTurn, a ValueError: a system prompt alone for
    Anthropic/Gemini)."""
    provider, model = str(data.get("provider") or "").strip().lower(), str(data.get("model") or "").strip()
    if not model:
        raise ValueError("Name a model.")
    provider = provider or internal.guess_provider(model)
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ValueError("Parameters must be a JSON object.")
    given = input_of(org, data)
    internal.require_turn(provider, given.chat)
    version = given.version
    if version is not None:
        parameters = {**version.parameters, **parameters}
    return Column(provider, model, given.chat, parameters, version.pk if version else None)


async def column_answer(column: Column, *, org: Organization, user_id: str) -> AsyncIterator[dict]:
    """The column's answer as events: {"delta": text} as it streams, then one {"done": True, …} with tokens,
    cost and latency, or the error. The call is recorded with the user as user_id and client
    `ingate-playground`. Closing the iterator early (the browser went away) hangs up on the upstream too, and
    the record says so."""
    queue: asyncio.Queue = asyncio.Queue()
    hang_up = asyncio.Event()

    async def on_text(text: str) -> None:
        await queue.put({"delta": text})

    async def ask() -> None:
        try:
            answer = await internal.chat(
                internal.Principal(org_id=org.pk, org_slug=org.slug),
                column.provider,
                column.model,
                column.chat,
                column.parameters,
                stream=True,
                on_text=on_text,
                user_id=user_id,
                client="ingate-playground",
                prompt_version_id=column.prompt_version_id,
                abort=hang_up,
            )
            await queue.put(
                {
                    "done": True,
                    "error": answer.error,
                    "text": answer.text if not answer.ok else "",
                    "input_tokens": answer.input_tokens,
                    "output_tokens": answer.output_tokens,
                    "cost": answer.cost,
                    "latency_ms": answer.latency_ms,
                    "ttfb_ms": answer.ttfb_ms,
                    "request_id": answer.request_id,
                    "model": answer.model,
                }
            )
        except Exception as exc:  # noqa: BLE001  (the column shows it instead of a hung stream)
            await queue.put({"done": True, "error": f"{type(exc).__name__}: {exc}"})

    task = asyncio.get_running_loop().create_task(ask())
    try:
        while True:
            event = await queue.get()
            yield event
            if event.get("done"):
                return
    finally:
        hang_up.set()
        await asyncio.gather(task, return_exceptions=True)


def item_save(*, actor: Actor, dataset: Dataset, given: Input, expected: str | None) -> DatasetVersion:
    """The input as a new item of the dataset, with a column's answer as the expected output if picked."""
    # A prompt version's input is its variables, and the user message if any (the prompt itself comes from the
    # target when the item is evaluated); free text is messages.
    item = clean_item(
        {
            "variables": given.variables,
            "expected": expected,
            **({"messages": [{"role": "user", "content": given.user}]} if given.user else {}),
        }
        if given.version
        else {"messages": given.chat, "expected": expected}
    )
    return services.items_add(actor=actor, dataset=dataset, items=[item], message="Added from the playground")


def prompt_version_save(*, actor: Actor, prompt: Prompt, given: Input, model: str, parameters: dict) -> PromptVersion:
    """The input's messages as the prompt's next version."""
    return prompt_services.version_create(
        actor=actor,
        prompt=prompt,
        messages=given.chat,
        model=model,
        parameters=parameters,
        commit_message="From the playground",
    )
