"""Prompt pages: prompts by namespace, with forms to add prompts and namespaces; a prompt's versions with their
labels, history and metrics; label moves (shown only to roles that may), a side-by-side diff and a render
form; the version editor and a version's own page. Who may do what is asked of the same helpers the prompts
API asks (tenancy.permissions.can_add, prompts.permissions.may_move_label)."""

from __future__ import annotations

import difflib
import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Sum
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from observability.models import RecordRollup
from proxy.providers import REGISTRY
from tenancy.audit import Actor
from tenancy.pages import OrgContext
from tenancy.permissions import VIEW, Principal, can_add, restrict

from . import preview, services
from .forms import ROLES, VARIABLE_TYPES, NamespaceForm, PromptCreateForm, RenderForm, VersionForm
from .models import Label, Namespace, Prompt, PromptVersion
from .permissions import may_move_label
from .render import placeholders
from .selectors import PromptRefError, prompt_version_by_ref


def _prompt(request, pk) -> Prompt:
    return get_object_or_404(
        restrict(Prompt.objects.select_related("namespace", "org"), Principal.for_user(request.user), VIEW), pk=pk
    )


@login_required
def prompt_list(request, *, forms: dict | None = None, status: int = 200):
    ctx = OrgContext(request, Prompt)
    prompts = (
        restrict(Prompt.objects.filter(org=ctx.org, archived_at__isnull=True), ctx.principal, VIEW)
        .select_related("namespace")
        .prefetch_related("labels__version")
        if ctx.org
        else []
    )
    spaces = restrict(Namespace.objects.filter(org=ctx.org), ctx.principal, VIEW) if ctx.org else []
    # Every namespace, the empty ones too (just made, waiting for their first prompt).
    by_namespace: dict[str, list[Prompt]] = {space.path: [] for space in spaces}
    for prompt in prompts:
        by_namespace.setdefault(prompt.namespace.path, []).append(prompt)
    forms = forms or {}
    context = {
        "orgs": ctx.orgs,
        "org": ctx.org,
        "namespaces": dict(sorted(by_namespace.items())),
        # The API's checks (NamespaceViewSet / PromptViewSet.require_add), asked of the same helper.
        "may_add_prompt": ctx.org is not None and can_add(ctx.principal, Prompt, ctx.org),
        "may_add_namespace": ctx.org is not None and can_add(ctx.principal, Namespace, ctx.org),
        "prompt_form": forms.get("prompt") or PromptCreateForm(initial={"namespace": request.GET.get("namespace", "")}),
        "namespace_form": forms.get("namespace") or NamespaceForm(),
    }
    return render(request, "prompts/list.html", context, status=status)


def _form_errors(form, exc: ValidationError, fields: dict[str, str]) -> None:
    """A service's ValidationError onto the form: model field names mapped to the form's (others: the form's)."""
    for field, messages_ in exc.message_dict.items():
        target = fields.get(field)
        for message in messages_:
            form.add_error(target if target in form.fields else None, message)


@login_required
@require_POST
def prompt_new(request):
    ctx = OrgContext(request, Prompt)
    if ctx.org is None or not can_add(ctx.principal, Prompt, ctx.org):
        raise PermissionDenied("Your role does not allow you to add prompts here.")
    form = PromptCreateForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            prompt = services.prompt_create(
                actor=Actor.from_request(request, via="web"),
                org=ctx.org,
                namespace=data["namespace"],
                name=data["name"],
                description=data["description"],
                tags=data["tags"],
            )
        except ValidationError as exc:
            _form_errors(form, exc, {"path": "namespace", "name": "name", "description": "description"})
        else:
            messages.success(request, f"Created {prompt.ref}. Write its first version.")
            return redirect("prompts:version_new", pk=prompt.pk)
    return prompt_list(request, forms={"prompt": form}, status=400)


@login_required
@require_POST
def namespace_new(request):
    ctx = OrgContext(request, Prompt)
    if ctx.org is None or not can_add(ctx.principal, Namespace, ctx.org):
        raise PermissionDenied("Your role does not allow you to add namespaces here.")
    form = NamespaceForm(request.POST)
    if form.is_valid():
        try:
            space = services.namespace_create(
                actor=Actor.from_request(request, via="web"),
                org=ctx.org,
                path=form.cleaned_data["path"],
                description=form.cleaned_data["description"],
            )
        except ValidationError as exc:
            _form_errors(form, exc, {"path": "path", "description": "description", "__all__": "path"})
        else:
            messages.success(request, f"Created the namespace {space.path}.")
            return redirect(f"{reverse('prompts:list')}?org={ctx.org.slug}")
    return prompt_list(request, forms={"namespace": form}, status=400)


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
        "may_add": can_add(principal, Prompt, prompt.org),
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


@login_required
def version_new(request, pk):
    """The editor: a new version, started from the latest one (or `?from=<number>`); saved as the next number."""
    prompt = _prompt(request, pk)
    principal = Principal.for_user(request.user)
    # The API's check for POST /prompts/<id>/versions/ (PromptViewSet.require_add), asked of the same helper.
    if not can_add(principal, Prompt, prompt.org):
        raise PermissionDenied(f"Your role does not allow you to add versions of {prompt.ref}.")
    if request.method == "POST":
        form = VersionForm(request.POST)
        if form.is_valid():
            try:
                version = services.version_create(
                    actor=Actor.from_request(request, via="web"), prompt=prompt, **form.service_fields()
                )
            except ValidationError as exc:
                _form_errors(form, exc, {"template": "template", "model": "model", "commit_message": "commit_message"})
            else:
                messages.success(request, f"Saved {prompt.ref} version {version.number}.")
                return redirect("prompts:version", pk=prompt.pk, number=version.number)
        start = {"rows": form.rows or [{"role": "user", "content": ""}], "types": form.types}
        status = 400
    else:
        base = prompt.versions.filter(number=_number(request.GET.get("from"))).first() or prompt.versions.first()
        start = VersionForm.initial_from(base)
        form = VersionForm(initial=start.pop("initial"))
        status = 200
    return render(
        request,
        "prompts/version_form.html",
        {
            "orgs": OrgContext(request, Prompt).orgs,
            "org": prompt.org,
            "prompt": prompt,
            "form": form,
            "rows": start["rows"],
            "types": start.get("types", {}),
            "detected": placeholders(start["rows"], form["template"].value() or ""),
            "roles": ROLES,
            "variable_types": VARIABLE_TYPES,
        },
        status=status,
    )


def _number(value) -> int:
    try:
        return min(int(value or 0), 2**31 - 1)
    except ValueError:
        return 0


@login_required
def version_detail(request, pk, number):
    """One version as written: its messages by role, template, variables, model and parameters, labels."""
    prompt = _prompt(request, pk)
    version = get_object_or_404(PromptVersion, prompt=prompt, number=_number(number))
    previous = prompt.versions.filter(number__lt=version.number).first()
    return render(
        request,
        "prompts/version.html",
        {
            "orgs": OrgContext(request, Prompt).orgs,
            "org": prompt.org,
            "prompt": prompt,
            "version": version,
            "previous": previous,
            "labels": sorted(prompt.labels.filter(version=version).values_list("name", flat=True)),
            "detected": placeholders(version.messages, version.template),
            "parameters": json.dumps(version.parameters, indent=2, sort_keys=True) if version.parameters else "",
            "may_add": can_add(Principal.for_user(request.user), Prompt, prompt.org),
        },
    )
