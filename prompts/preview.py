"""Trying a prompt version from its page: the request it would send to a provider and, when asked, the model's
answer through the gateway. The outcome is plain data the page shows once (kept in the session meanwhile)."""

from __future__ import annotations

import json

from asgiref.sync import async_to_sync

from proxy import formats, internal

from .forms import RenderForm
from .models import Prompt, PromptVersion
from .render import Rendered, for_provider


def render_result(form: RenderForm, *, prompt: Prompt, may_send: bool, user_id: str) -> dict:
    """What the page shows after its render form: the inputs as given, the request body the version renders to
    for the chosen provider, warnings and errors, and with "send" the model's answer (or why there is none).
    `may_send` is the caller's right to spend the org's money on a model call."""
    valid = form.is_valid()
    data, given = form.cleaned_data, form.data
    shown = {
        "prompt": prompt.pk,
        "version": given.get("version", ""),
        "variables": given.get("variables", ""),
        "user": given.get("user", ""),
        "provider": data.get("provider", given.get("provider", "")),
        "model": data.get("model", given.get("model", "")),
        "output": "",
        "error": "",
        "warning": form.warning,
    }
    rendered = data.get("rendered")
    if rendered is not None:
        fields = for_provider(rendered, formats.of_provider(shown["provider"]))
        shown["output"] = json.dumps(
            {"model": shown["model"], **data["version"].parameters, **fields}, indent=2, ensure_ascii=False
        )
        if rendered.unused:
            shown["warning"] = " ".join(
                filter(None, [f"Not used by this version: {', '.join(rendered.unused)}.", shown["warning"]])
            )
    if not valid:
        shown["error"] = " ".join(message for errors in form.errors.values() for message in errors)
    elif data["send"]:
        if may_send:
            shown["answer"] = ask(
                prompt=prompt,
                version=data["version"],
                provider=shown["provider"],
                model=shown["model"],
                rendered=rendered,
                user_id=user_id,
            )
        else:
            shown["answer"] = {"error": "Your role may read prompts but not send them to a model."}
    return shown


def ask(*, prompt: Prompt, version: PromptVersion, provider: str, model: str, rendered: Rendered, user_id: str) -> dict:
    """The model's answer to a rendered version, through the gateway's own request path (recorded like any
    other call: `user_id` as the user, client `ingate-playground`, linked to the version)."""
    answer = async_to_sync(internal.chat)(
        internal.Principal(org_id=prompt.org_id, org_slug=prompt.org.slug),
        provider,
        model,
        rendered.chat(),
        version.parameters,
        user_id=user_id,
        client="ingate-playground",
        prompt_version_id=version.pk,
    )
    return {
        "text": answer.text,
        "error": answer.error,
        "status": answer.status,
        "request_id": answer.request_id,
        "latency_ms": answer.latency_ms,
        "input_tokens": answer.input_tokens,
        "output_tokens": answer.output_tokens,
        "cost": answer.cost,
        "model": answer.model,
    }
