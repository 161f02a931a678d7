"""Prompt pages: prompts by namespace; a prompt's versions with their labels, history and metrics; label
moves (shown only to roles that may), a side-by-side diff and a render form."""

from __future__ import annotations

import difflib

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Sum
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from observability.models import RecordRollup
from proxy.providers import REGISTRY
from tenancy.audit import Actor
from tenancy.pages import OrgContext
from tenancy.permissions import VIEW, Principal, can_add, restrict

from . import preview, services
from .forms import RenderForm
from .models import Label, Prompt, PromptVersion
from .permissions import may_move_label
from .selectors import PromptRefError, prompt_version_by_ref


def _prompt(request, pk) -> Prompt:
    return get_object_or_404(
        restrict(Prompt.objects.select_related("namespace", "org"), Principal.for_user(request.user), VIEW), pk=pk
    )


@login_required
def prompt_list(request):
    ctx = OrgContext(request, Prompt)
    prompts = (
        restrict(Prompt.objects.filter(org=ctx.org, archived_at__isnull=True), ctx.principal, VIEW)
        .select_related("namespace")
        .prefetch_related("labels__version")
        if ctx.org
        else []
    )
    by_namespace: dict[str, list[Prompt]] = {}
    for prompt in prompts:
        by_namespace.setdefault(prompt.namespace.path, []).append(prompt)
    return render(request, "prompts/list.html", {"orgs": ctx.orgs, "org": ctx.org, "namespaces": by_namespace})


def _metrics(prompt: Prompt) -> dict[int, dict]:
    """Requests, errors and cost per version over the last 30 days, from the rollups."""
    since = timezone.now() - timezone.timedelta(days=30)
    rows = (
        RecordRollup.objects.filter(
            org=prompt.org,
            dimension="prompt",
            bucket__gte=since,
            value__in=[str(pk) for pk in prompt.versions.values_list("pk", flat=True)],
        )
        .values("value")
        .annotate(
            requests=Sum("requests"),
            errors=Sum("errors"),
            cost=Sum("cost"),
            unpriced=Sum("unpriced"),
            priced=Sum("priced"),
        )
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
    rows = [
        {"version": v, "labels": sorted(by_version.get(v.number, [])), "metrics": metrics.get(v.pk)} for v in versions
    ]
    names = sorted(set(labels) | {"development", "staging", "production"})
    context = {
        "orgs": OrgContext(request, Prompt).orgs,
        "org": prompt.org,
        "prompt": prompt,
        "rows": rows,
        "labels": labels,
        "label_names": names,
        "movable": [n for n in names if may_move_label(principal, prompt, n)],
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


@login_required
@require_POST
def move_label(request, pk):
    prompt = _prompt(request, pk)
    action, name = request.POST.get("action"), request.POST.get("label", "")
    if not may_move_label(Principal.for_user(request.user), prompt, name):
        messages.error(request, f"Your role may not move the '{name}' label.")
        return redirect("prompts:detail", pk=prompt.pk)
    actor = Actor.from_request(request, via="web")
    try:
        if action == "promote":
            services.label_promote(actor=actor, prompt=prompt, source=request.POST.get("source", ""), target=name)
        elif action == "rollback":
            services.label_rollback(actor=actor, prompt=prompt, name=name)
        elif action == "set":
            version = prompt_version_by_ref(prompt=prompt, ref=request.POST.get("version", ""))
            services.label_set(actor=actor, prompt=prompt, name=name, version=version)
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
    answer through the gateway. The page shows the result once, after the redirect."""
    prompt = _prompt(request, pk)
    form = RenderForm(request.POST, prompt=prompt)
    # A model call spends the org's money: members and up, like creating a version.
    may_send = can_add(Principal.for_user(request.user), PromptVersion, prompt.org)
    request.session["prompt_render"] = preview.render_result(
        form, prompt=prompt, may_send=may_send, user_id=request.user.get_username()
    )
    return redirect("prompts:detail", pk=prompt.pk)
