"""Prompt pages: prompts by namespace; a prompt's versions with their labels, history and metrics; label
moves (shown only to roles that may), a side-by-side diff and a render form."""

from __future__ import annotations

import difflib
import json

from asgiref.sync import async_to_sync
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Sum
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from observability.models import RecordRollup
from proxy import internal
from proxy.providers import REGISTRY
from observability.views import OrgContext
from tenancy.audit import Actor, client_ip
from tenancy.permissions import VIEW, Principal, can_add, restrict

from . import services
from .forms import RenderForm
from .models import Label, Prompt, PromptVersion
from .permissions import may_move_label
from .render import for_provider
from .selectors import PromptRefError, prompt_version_by_ref


def _prompt(request, pk) -> Prompt:
    return get_object_or_404(
        restrict(Prompt.objects.select_related("namespace", "org"), Principal.for_user(request.user), VIEW), pk=pk
    )


@login_required
def prompt_list(request):
    ctx = OrgContext(request)
    prompts = (
        restrict(Prompt.objects.filter(org=ctx.org, archived_at__isnull=True), ctx.principal, VIEW)
        .select_related("namespace").prefetch_related("labels__version")
        if ctx.org else []
    )
    by_namespace: dict[str, list[Prompt]] = {}
    for prompt in prompts:
        by_namespace.setdefault(prompt.namespace.path, []).append(prompt)
    return render(request, "prompts/list.html", {"orgs": ctx.orgs, "org": ctx.org, "namespaces": by_namespace})


def _metrics(prompt: Prompt) -> dict[int, dict]:
    """Requests, errors and cost per version over the last 30 days, from the rollups."""
    since = timezone.now() - timezone.timedelta(days=30)
    rows = (
        RecordRollup.objects.filter(org=prompt.org, dimension="prompt", bucket__gte=since,
                                    value__in=[str(pk) for pk in prompt.versions.values_list("pk", flat=True)])
        .values("value").annotate(requests=Sum("requests"), errors=Sum("errors"), cost=Sum("cost"),
                                  unpriced=Sum("unpriced"), priced=Sum("priced"))
    )
    return {int(row["value"]): row for row in rows}


@login_required
def prompt_detail(request, pk):
    prompt = _prompt(request, pk)
    principal = Principal.for_user(request.user)
    versions = list(prompt.versions.all())
    labels = {label.name: label for label in prompt.labels.select_related("version")}
    by_version: dict[int, list[str]] = {}
    for label in labels.values():
        by_version.setdefault(label.version.number, []).append(label.name)
    metrics = _metrics(prompt)
    rows = [{"version": v, "labels": sorted(by_version.get(v.number, [])), "metrics": metrics.get(v.pk)} for v in versions]
    names = sorted(set(labels) | {"development", "staging", "production"})
    context = {
        "orgs": OrgContext(request).orgs, "org": prompt.org, "prompt": prompt, "rows": rows, "labels": labels,
        "label_names": names, "movable": [n for n in names if may_move_label(principal, prompt, n)],
        "history": prompt.label_moves.select_related("from_version", "to_version")[:50],
        "providers": sorted(REGISTRY),
    }
    shown = request.session.pop("prompt_render", None)
    if shown and shown.get("prompt") == prompt.pk:
        context["render_result"] = shown
    old, new = request.GET.get("from"), request.GET.get("to")
    if old and new:
        try:
            a, b = (prompt_version_by_ref(prompt=prompt, ref=ref) for ref in (old, new))
        except PromptRefError as exc:
            context["diff_error"] = str(exc)
        else:
            table = difflib.HtmlDiff(wrapcolumn=70).make_table(
                services.version_lines(a), services.version_lines(b), f"v{a.number}", f"v{b.number}", context=False
            )
            context.update(diff_table=table, diff_from=a.number, diff_to=b.number)
    return render(request, "prompts/detail.html", context)


def _actor(request) -> Actor:
    return Actor(principal=Principal.for_user(request.user), ip=client_ip(request), via="web")


@login_required
@require_POST
def move_label(request, pk):
    prompt = _prompt(request, pk)
    action, name = request.POST.get("action"), request.POST.get("label", "")
    if not may_move_label(Principal.for_user(request.user), prompt, name):
        messages.error(request, f"Your role may not move the '{name}' label.")
        return redirect("prompts:detail", pk=prompt.pk)
    try:
        if action == "promote":
            services.label_promote(actor=_actor(request), prompt=prompt, source=request.POST.get("source", ""), target=name)
        elif action == "rollback":
            services.label_rollback(actor=_actor(request), prompt=prompt, name=name)
        elif action == "set":
            version = prompt_version_by_ref(prompt=prompt, ref=request.POST.get("version", ""))
            services.label_set(actor=_actor(request), prompt=prompt, name=name, version=version)
        else:
            raise Http404
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    except PromptRefError as exc:
        messages.error(request, str(exc))
    else:
        label = Label.objects.get(prompt=prompt, name=name)
        messages.success(request, f"{name} now points at version {label.version.number}.")
    return redirect("prompts:detail", pk=prompt.pk)


@login_required
@require_POST
def render_form(request, pk):
    """Render a version with variables (and a user message after it); with "send", also ask a model for its
    answer through the gateway (the call is recorded like any other: the user as user_id, client
    `ingate-playground`, linked to the version)."""
    prompt = _prompt(request, pk)
    form = RenderForm(request.POST, prompt=prompt)
    valid = form.is_valid()
    data = form.cleaned_data
    shown = {"prompt": prompt.pk, "version": request.POST.get("version", ""), "variables": request.POST.get("variables", ""),
             "user": request.POST.get("user", ""), "provider": data.get("provider", request.POST.get("provider", "")),
             "model": data.get("model", request.POST.get("model", "")), "output": "", "error": "", "warning": form.warning}
    rendered = data.get("rendered")
    if rendered is not None:
        fields = for_provider(rendered, internal.shape_of(shown["provider"]))
        shown["output"] = json.dumps({"model": shown["model"], **data["version"].parameters, **fields}, indent=2,
                                     ensure_ascii=False)
        if rendered.unused:
            shown["warning"] = " ".join(filter(None, [f"Not used by this version: {', '.join(rendered.unused)}.",
                                                      shown["warning"]]))
    if not valid:
        shown["error"] = " ".join(message for errors in form.errors.values() for message in errors)
    elif data["send"]:
        # A model call spends the org's money: members and up, like creating a version.
        if can_add(Principal.for_user(request.user), PromptVersion, prompt.org):
            shown["answer"] = _ask(request, prompt, data["version"], shown["provider"], shown["model"], rendered)
        else:
            shown["answer"] = {"error": "Your role may read prompts but not send them to a model."}
    request.session["prompt_render"] = shown
    return redirect("prompts:detail", pk=prompt.pk)


def _ask(request, prompt: Prompt, version: PromptVersion, provider: str, model: str, rendered) -> dict:
    answer = async_to_sync(internal.chat)(
        internal.Principal(org_id=prompt.org_id, org_slug=prompt.org.slug), provider, model, rendered.chat(),
        version.parameters, user_id=request.user.get_username(), client="ingate-playground",
        prompt_version_id=version.pk,
    )
    return {"text": answer.text, "error": answer.error, "status": answer.status, "request_id": answer.request_id,
            "latency_ms": answer.latency_ms, "input_tokens": answer.input_tokens,
            "output_tokens": answer.output_tokens, "cost": answer.cost, "model": answer.model}
