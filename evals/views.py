"""Eval pages: datasets (versions, items, import/export, add from records), queueing a run, a run's live
progress and results, comparisons, and the playground (several models answering one prompt side by side)."""

from __future__ import annotations

import json
import uuid
from contextlib import aclosing

import orjson
from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from observability.scores import ScoreMatch
from observability.traces import record_replay
from prompts.models import Prompt, PromptVersion
from prompts.render import RenderError, placeholders
from proxy.providers import REGISTRY
from tenancy.audit import Actor
from tenancy.pages import OrgContext
from tenancy.permissions import ADD, CHANGE, VIEW, Principal, can, can_add, orgs_where, restrict

from . import compare as comparing
from . import evaluators, services, transfer
from . import playground as playground_service
from .models import Dataset, EvalRun
from .runner import summarize

MAX_COLUMNS = 4
RESULTS_PER_PAGE = 100


def _dataset(request, pk) -> Dataset:
    return get_object_or_404(
        restrict(Dataset.objects.select_related("org"), Principal.for_user(request.user), VIEW), pk=pk
    )


def _run(request, pk) -> EvalRun:
    return get_object_or_404(
        restrict(
            EvalRun.objects.select_related("org", "dataset_version__dataset"), Principal.for_user(request.user), VIEW
        ),
        pk=pk,
    )


def _page(request, template: str, org, **context):
    """A page about one object: the org switcher lists the user's orgs, with the object's org picked."""
    return render(request, template, {"orgs": OrgContext(request, Dataset).orgs, "org": org, **context})


@login_required
def index(request):
    ctx = OrgContext(request, Dataset)
    datasets = (
        restrict(Dataset.objects.filter(org=ctx.org, archived_at__isnull=True), ctx.principal, VIEW) if ctx.org else []
    )
    runs = (
        restrict(EvalRun.objects.filter(org=ctx.org), ctx.principal, VIEW)
        .select_related("dataset_version__dataset")
        .prefetch_related("targets")[:30]
        if ctx.org
        else []
    )
    return render(
        request,
        "evals/index.html",
        {
            "orgs": ctx.orgs,
            "org": ctx.org,
            "datasets": datasets,
            "runs": runs,
            "may_add": ctx.org is not None and can_add(ctx.principal, Dataset, ctx.org),
        },
    )


@login_required
@require_POST
def dataset_create(request):
    ctx = OrgContext(request, Dataset)
    if ctx.org is None or not can_add(ctx.principal, Dataset, ctx.org):
        raise PermissionDenied
    name = request.POST.get("name", "").strip()
    upload = request.FILES.get("file")
    try:
        items = transfer.read_upload(upload) if upload else []
        if not name:
            raise ValidationError({"name": "Give the dataset a name."})
        if Dataset.objects.filter(org=ctx.org, name=name).exists():
            raise ValidationError({"name": f"{ctx.org.name} already has a dataset named {name}."})
        dataset = services.dataset_create(
            actor=Actor.from_request(request, via="web"),
            org=ctx.org,
            name=name,
            description=request.POST.get("description", ""),
            items=items,
            message=f"Imported {upload.name}" if upload else "Created",
        )
    except transfer.DatasetImportError as exc:
        messages.error(request, "Nothing was imported. " + "; ".join(exc.lines()[:20]))
        return redirect(f"/ingate/evals/?org={ctx.org.slug}")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(f"/ingate/evals/?org={ctx.org.slug}")
    messages.success(request, f"Dataset {dataset.name} created with {dataset.latest.item_count} item(s).")
    return redirect("evals:dataset", pk=dataset.pk)


@login_required
def dataset_detail(request, pk):
    dataset = _dataset(request, pk)
    versions = list(dataset.versions.all())
    wanted = request.GET.get("version")
    version = next((v for v in versions if str(v.number) == wanted), versions[0] if versions else None)
    if wanted and (version is None or str(version.number) != wanted):
        raise Http404("No such version.")
    page = Paginator(version.items.all(), 100).get_page(request.GET.get("page")) if version else []
    return _page(
        request,
        "evals/dataset.html",
        dataset.org,
        dataset=dataset,
        versions=versions,
        version=version,
        page=page,
        may_change=can(Principal.for_user(request.user), CHANGE, dataset),
    )


@login_required
@require_POST
def dataset_change(request, pk):
    """Import a file (append or replace) or add one item: each makes a new version."""
    dataset = _dataset(request, pk)
    if not can(Principal.for_user(request.user), CHANGE, dataset):
        raise PermissionDenied
    actor = Actor.from_request(request, via="web")
    try:
        if upload := request.FILES.get("file"):
            items = transfer.read_upload(upload)
            if request.POST.get("mode") == "replace":
                version = services.version_create(
                    actor=actor, dataset=dataset, items=items, message=f"Imported {upload.name}"
                )
            else:
                version = services.items_add(
                    actor=actor, dataset=dataset, items=items, message=f"Imported {upload.name}"
                )
        else:
            item = transfer.clean_item(
                {
                    "input": request.POST.get("input", ""),
                    "expected": request.POST.get("expected") or None,
                    **({"variables": json.loads(request.POST["variables"])} if request.POST.get("variables") else {}),
                }
            )
            version = services.items_add(actor=actor, dataset=dataset, items=[item])
    except transfer.DatasetImportError as exc:
        messages.error(request, "Nothing was imported. " + "; ".join(exc.lines()[:20]))
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Version {version.number}: {version.item_count} item(s).")
    return redirect("evals:dataset", pk=dataset.pk)


@login_required
@require_POST
def add_from_records(request):
    """The logs page's "add to dataset": the ticked records become items of the chosen dataset."""
    dataset = _dataset(request, _number(request.POST.get("dataset")))
    principal = Principal.for_user(request.user)
    if not can(principal, CHANGE, dataset):
        raise PermissionDenied
    ids = [value for value in request.POST.getlist("record") if _is_uuid(value)]
    if not ids:
        messages.error(request, "Tick the records to add first.")
        return redirect(request.META.get("HTTP_REFERER") or "observability:logs")
    try:
        version = services.items_from_records(
            actor=Actor.from_request(request, via="web"), dataset=dataset, record_ids=ids
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.message_dict["records"]))
        return redirect(request.META.get("HTTP_REFERER") or "observability:logs")
    messages.success(request, f"Added {len(ids)} record(s) to {dataset.name} (version {version.number}).")
    return redirect("evals:dataset", pk=dataset.pk)


@login_required
@require_POST
def dataset_from_scores(request):
    """The review queue's "build a dataset": scored requests of the org become a dataset version."""
    ctx = OrgContext(request, Dataset)
    if ctx.org is None or not can_add(ctx.principal, Dataset, ctx.org):
        raise PermissionDenied("Your role does not allow you to add datasets here.")
    back = f"{reverse('observability:review')}?org={ctx.org.slug}"
    name, score_name = request.POST.get("dataset", "").strip(), request.POST.get("score_name", "").strip()
    if not name or not score_name:
        messages.error(request, "Name the dataset and the score.")
        return redirect(back)
    try:
        match = ScoreMatch.parse(request.POST.get("score", "")) if request.POST.get("score", "").strip() else None
        version, left_out = services.dataset_from_scores(
            actor=Actor.from_request(request, via="web"),
            org=ctx.org,
            dataset_name=name,
            score_name=score_name,
            score=match,
            limit=max(1, min(_number(request.POST.get("limit"), 500), 5000)),
        )
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect(back)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(back)
    skipped = f" ({left_out} left out: their text is not kept)" if left_out else ""
    messages.success(request, f"{version.dataset.name} version {version.number}: {version.item_count} items{skipped}.")
    return redirect("evals:dataset", pk=version.dataset_id)


# --- runs --------------------------------------------------------------------------------------------


def _prompt_versions(org) -> list[PromptVersion]:
    return list(
        PromptVersion.objects.filter(prompt__org=org, prompt__archived_at__isnull=True)
        .select_related("prompt__namespace")
        .order_by("prompt__namespace__path", "prompt__name", "-number")[:200]
    )


# Evaluators offered as checkboxes: the ones that need no settings.
_SIMPLE = ("exact_match", "contains", "valid_json", "similarity")


@login_required
def run_new(request):
    ctx = OrgContext(request, Dataset)
    if ctx.org is None:
        raise Http404
    datasets = restrict(Dataset.objects.filter(org=ctx.org, archived_at__isnull=True), ctx.principal, VIEW)
    datasets = datasets.prefetch_related("versions")
    context = {
        "orgs": ctx.orgs,
        "org": ctx.org,
        "datasets": datasets,
        "prompt_versions": _prompt_versions(ctx.org),
        "providers": sorted(REGISTRY),
        "catalogue": evaluators.catalogue(),
        "simple": _SIMPLE,
        "columns": range(MAX_COLUMNS),
        "form": request.POST or {},
    }
    if request.method != "POST":
        return render(request, "evals/run_new.html", context)
    if not can_add(ctx.principal, EvalRun, ctx.org):
        raise PermissionDenied
    try:
        run = services.run_create(
            actor=Actor.from_request(request, via="web"),
            org=ctx.org,
            dataset_version=_version_of(request, ctx.org),
            targets=_targets_from(request.POST),
            evaluators=_evaluators_from(request.POST),
            name=request.POST.get("name", ""),
            concurrency=_number(request.POST.get("concurrency"), 4),
        )
    except ValidationError as exc:
        context["errors"] = exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages}
        return render(request, "evals/run_new.html", context, status=400)
    messages.success(request, f"Run {run.pk} queued: {run.total} calls.")
    return redirect("evals:run", pk=run.pk)


def _number(value, default: int = 0) -> int:
    """A form's number, or `default` when a hand-made request sends something else."""
    return int(value) if isinstance(value, str) and value.isdigit() else default


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _version_of(request, org):
    from .models import DatasetVersion

    found = DatasetVersion.objects.filter(pk=_number(request.POST.get("dataset_version")), dataset__org=org).first()
    if found is None:
        raise ValidationError({"dataset_version": "Pick a dataset version."})
    return found


def _targets_from(post) -> list[dict]:
    targets = []
    for n in range(MAX_COLUMNS):
        model, version = post.get(f"t{n}-model", "").strip(), post.get(f"t{n}-prompt_version", "")
        if not model and not version:
            continue
        try:
            parameters = json.loads(post.get(f"t{n}-parameters") or "{}")
        except ValueError:
            raise ValidationError({f"targets.{n}.parameters": "Parameters are not valid JSON."}) from None
        system = post.get(f"t{n}-system", "").strip()
        targets.append(
            {
                "prompt_version": int(version) if version.isdigit() else None,
                "model": model,
                "provider": post.get(f"t{n}-provider", "").strip(),
                "parameters": parameters,
                "messages": [{"role": "system", "content": system}] if system else [],
            }
        )
    return targets


def _evaluators_from(post) -> list[dict]:
    specs = [{"kind": kind} for kind in post.getlist("evaluator") if kind in _SIMPLE]
    extra = post.get("evaluators_json", "").strip()
    if extra:
        try:
            more = json.loads(extra)
        except ValueError as exc:
            raise ValidationError({"evaluators": f"The evaluator settings are not valid JSON: {exc}"}) from None
        specs += more if isinstance(more, list) else [more]
    return specs


@login_required
def run_detail(request, pk):
    run = _run(request, pk)
    targets = list(run.targets.select_related("prompt_version__prompt__namespace"))
    summaries = {t.pk: (t.summary if run.finished and t.summary else summarize(t)) for t in targets}
    # A page of items at a time, each with its result per target (empty while still to do).
    page = Paginator(run.dataset_version.items.all(), RESULTS_PER_PAGE).get_page(request.GET.get("page"))
    found = {(r.item_id, r.target_id): r for r in run.results.filter(item__in=list(page.object_list))}
    table = [
        {"item": item, "input": comparing.input_preview(item), "cells": [found.get((item.pk, t.pk)) for t in targets]}
        for item in page.object_list
    ]
    return _page(
        request,
        "evals/run.html",
        run.org,
        run=run,
        targets=[(t, summaries[t.pk]) for t in targets],
        table=table,
        page=page,
        may_cancel=not run.finished and can(Principal.for_user(request.user), CHANGE, run),
    )


@login_required
@require_POST
def run_cancel(request, pk):
    run = _run(request, pk)
    if not can(Principal.for_user(request.user), CHANGE, run):
        raise PermissionDenied
    services.run_cancel(actor=Actor.from_request(request, via="web"), run=run)
    messages.success(request, f"Run {run.pk} is stopping.")
    return redirect("evals:run", pk=run.pk)


@login_required
def run_compare(request):
    principal = Principal.for_user(request.user)
    try:
        a, b = (comparing.target_of(principal, request.GET.get(side, "")) for side in ("a", "b"))
    except ValueError as exc:
        raise Http404(str(exc)) from None
    result = comparing.compare(a, b)
    changes_only = request.GET.get("show") == "changes"
    rows = [r for r in result["rows"] if r["change"] in _CHANGES] if changes_only else result["rows"]
    page = Paginator(rows, RESULTS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return _page(
        request,
        "evals/compare.html",
        a.run.org,
        cmp=result,
        a=a,
        b=b,
        page=page,
        changes_only=changes_only,
        query=query.urlencode(),
    )


_CHANGES = ("regression", "improvement", "mixed")


# --- playground ------------------------------------------------------------------------------------


@login_required
def playground(request):
    ctx = OrgContext(request, Dataset)
    datasets, prompts = [], []
    if ctx.org is not None:
        datasets = restrict(Dataset.objects.filter(org=ctx.org, archived_at__isnull=True), ctx.principal, VIEW)
        prompts = restrict(Prompt.objects.filter(org=ctx.org, archived_at__isnull=True), ctx.principal, VIEW)
        prompts = prompts.select_related("namespace")
    versions = _prompt_versions(ctx.org) if ctx.org else []
    wanted = request.GET.get("prompt_version", "")
    picked = next((v for v in versions if str(v.pk) == wanted), None) if wanted else None
    if wanted and picked is None and ctx.org is not None:
        picked = (
            PromptVersion.objects.filter(pk=int(wanted) if _is_id(wanted) else 0, prompt__in=prompts)
            .select_related("prompt__namespace")
            .first()
        )
        versions = [picked, *versions] if picked else versions
    columns = [("", picked.model if picked and picked.model else "gpt-4o-mini"), ("", "claude-3-5-haiku-latest")]
    columns += [("", ""), ("", "")]
    # "Replay in playground" on a request's page: its system prompt, last user message and model, prefilled.
    replay = (
        record_replay(ctx.principal, ctx.org, request.GET["record"])
        if ctx.org and _is_uuid(request.GET.get("record"))
        else None
    )
    if replay:
        columns[0] = (replay["provider"], replay["model"])
    return render(
        request,
        "evals/playground.html",
        {
            "orgs": ctx.orgs,
            "org": ctx.org,
            "providers": sorted(REGISTRY),
            "datasets": datasets,
            "prompts": prompts,
            "prompt_versions": versions,
            "picked": picked,
            # A version opened from its prompt page: its variables to fill in, its model in the first column.
            "picked_variables": json.dumps(dict.fromkeys(placeholders(picked.messages, picked.template), ""))
            if picked
            else "{}",
            "replay": replay,
            "columns": [{"n": n, "model": model, "provider": provider} for n, (provider, model) in enumerate(columns)],
        },
    )


def _is_uuid(value: str | None) -> bool:
    try:
        uuid.UUID(value or "")
    except ValueError:
        return False
    return True


def _is_id(value: str) -> bool:
    return value.isascii() and value.isdigit() and len(value) < 16


def _org_for(user, slug: str, action: str, model):
    return orgs_where(Principal.for_user(user), model, action).filter(slug=slug).first()


async def playground_stream(request):
    """One column of the playground: the answer as server-sent events (`delta`, then `done` with tokens, cost
    and latency). Runs on the server's event loop; the model call goes through the proxy's request path."""
    if request.method != "POST":
        return JsonResponse({"error": "POST only."}, status=405)
    user = await request.auser()
    if not user.is_authenticated:
        return JsonResponse({"error": "Sign in first."}, status=401)
    try:
        data = orjson.loads(request.body)
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
    except ValueError as exc:
        return JsonResponse({"error": f"Not valid JSON: {exc}"}, status=400)
    org = await sync_to_async(_org_for)(user, str(data.get("org") or ""), VIEW, EvalRun)
    if org is None:
        return JsonResponse({"error": "No such organization, or not yours."}, status=404)
    # A model call spends the org's money: members and up, as on the prompt page.
    if not await sync_to_async(can_add)(Principal.for_user(user), EvalRun, org):
        return JsonResponse({"error": "Your role may read evals but not send prompts to a model."}, status=403)
    try:
        column = await sync_to_async(playground_service.column_of)(org, data)
    except (ValueError, RenderError) as exc:
        return JsonResponse({"error": str(exc)}, status=400)

    async def events():
        answer = playground_service.column_answer(column, org=org, user_id=user.get_username())
        # Closed at once when the browser goes away, which hangs up on the upstream too.
        async with aclosing(answer):
            async for event in answer:
                yield b"data: " + orjson.dumps(event) + b"\n\n"

    reply = StreamingHttpResponse(events(), content_type="text/event-stream")
    reply["Cache-Control"] = "no-cache"
    reply["X-Accel-Buffering"] = "no"
    return reply


@login_required
@require_POST
def playground_save(request):
    """Save the playground's input as a dataset item (with a column's answer as the expected output, if
    picked), or its messages as a new version of a prompt."""
    try:
        data = json.loads(request.body)
    except ValueError:
        return JsonResponse({"error": "Not valid JSON."}, status=400)
    org = _org_for(request.user, str(data.get("org") or ""), ADD, Dataset)
    if org is None:
        return JsonResponse({"error": "No such organization, or you may not change it."}, status=403)
    actor = Actor.from_request(request, via="web")
    try:
        given = playground_service.input_of(org, data)
        if data.get("kind") == "item":
            dataset = get_object_or_404(Dataset, pk=data.get("dataset") or 0, org=org)
            saved = playground_service.item_save(
                actor=actor, dataset=dataset, given=given, expected=data.get("expected") or None
            )
            return JsonResponse({"saved": f"Added to {dataset.name} (version {saved.number})."})
        if data.get("kind") == "prompt":
            prompt = get_object_or_404(Prompt, pk=data.get("prompt") or 0, org=org)
            if not can(actor.principal, ADD, prompt):
                return JsonResponse({"error": "Your role may not add prompt versions."}, status=403)
            new = playground_service.prompt_version_save(
                actor=actor,
                prompt=prompt,
                given=given,
                model=str(data.get("model") or ""),
                parameters=data.get("parameters") or {},
            )
            return JsonResponse({"saved": f"Saved as {prompt.ref} version {new.number}."})
    except (ValueError, RenderError) as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except ValidationError as exc:
        return JsonResponse({"error": " ".join(exc.messages)}, status=400)
    return JsonResponse({"error": "kind is item or prompt."}, status=400)
