"""The review queue: a person scores production requests one after another. The queue is a score name, the
values offered (labels, or a numeric scale) and the logs filters that pick its records; it shows the newest
record not yet scored under that name (nor skipped in this browser session), and the keyboard scores it."""

from __future__ import annotations

import json
import math
import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from proxy import formats
from tenancy.audit import Actor
from tenancy.pages import OrgContext
from tenancy.permissions import can_add

from . import scores, selectors, services
from .models import RequestBody, RequestRecord, Score

# The queue's own parameters are `name`, `labels` and `scale`; the others are logs filters (selectors.RecordFilter),
# of which the setup form offers these.
FILTERS_SHOWN = ("search", "model", "since", "until", "prompt_version", "user", "session", "score_name", "score")
_SKIPPED = "review_skipped"
_MAX_SKIPPED = 500
_LEFT_CAP = 1000  # "1000+ left": counting a million unscored records on every page costs more than it tells


def _queue(request) -> dict:
    """The queue's own settings from the query: the score name, and the labels or the scale it offers."""
    name = request.GET.get("name", "").strip()
    labels = [x.strip() for x in request.GET.get("labels", "").split(",") if x.strip()][:9]
    try:
        scale = max(2, min(int(request.GET.get("scale") or 5), 9))
    except ValueError:
        scale = 5
    choices = [{"label": x} for x in labels] or [{"value": n} for n in range(1, scale + 1)]
    return {"name": name, "labels": ",".join(labels), "scale": scale, "choices": choices}


def _conversation(record: RequestRecord, body: RequestBody | None) -> tuple[list[dict], str]:
    """The request's messages by role and the answer's text, when the org keeps full bodies."""
    if body is None or not body.request:
        return [], ""
    fmt = formats.of_provider(record.provider, record.endpoint)
    try:
        request = json.loads(body.request)
        chat = fmt.chat_messages(request) if isinstance(request, dict) else []
    except (ValueError, TypeError, AttributeError):
        chat = []
    answer = body.response
    if body.response and not record.stream:
        try:
            answer = fmt.text(json.loads(body.response)) or body.response
        except (ValueError, TypeError, AttributeError):
            answer = body.response
    shown = [
        {
            "role": m.get("role", "?"),
            "content": m["content"] if isinstance(m.get("content"), str) else json.dumps(m.get("content"), indent=2),
        }
        for m in chat
    ]
    return shown, answer


@login_required
def review_queue(request):
    ctx = OrgContext(request, RequestRecord)
    queue = _queue(request)
    context = {"orgs": ctx.orgs, "org": ctx.org, "queue": queue, "score_names": [], "filters_shown": FILTERS_SHOWN}
    if ctx.org is None:
        return render(request, "observability/review.html", context)
    records = selectors.records_for(ctx.principal).filter(org=ctx.org)
    filters = selectors.RecordFilter(request.GET, queryset=records, orgs=[ctx.org])
    context.update(
        filters=filters,
        score_names=scores.score_names(ctx.org.pk),
        may_score=can_add(ctx.principal, Score, ctx.org),
    )
    if not queue["name"]:
        return render(request, "observability/review.html", context)
    if not filters.is_valid():
        return render(request, "observability/review.html", context, status=400)
    skipped = request.session.get(_SKIPPED, {}).get(queue["name"], [])
    todo = scores.without_score(filters.qs, name=queue["name"]).exclude(pk__in=skipped).order_by("-created_at")
    record = todo.select_related("app", "key").first()
    body = RequestBody.objects.filter(record=record).first() if record else None
    chat, answer = _conversation(record, body) if record else ([], "")
    left = todo[: _LEFT_CAP + 1].count() if record else 0
    context.update(
        record=record,
        chat=chat,
        answer=answer,
        body=body,
        left=f"{_LEFT_CAP}+" if left > _LEFT_CAP else left,
        skipped=len(skipped),
        query=request.GET.urlencode(),
    )
    return render(request, "observability/review.html", context)


def _back(request, query: str):
    """Back where the score was given: the page named in `back` (a record's page), else the queue."""
    back = request.POST.get("back", "")
    if back and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        return redirect(back)
    return redirect(f"{reverse('observability:review')}?{query}")


@login_required
@require_POST
def review_score(request):
    """Score (or skip) the record on screen, then show the next one; also the "add score" form of a record's
    scores (templatetags/scores.py). Errors come back as a message, never as a failed page."""
    query = request.POST.get("queue", "")
    name = (request.POST.get("name") or QueryDict(query).get("name", "")).strip()
    ctx = OrgContext(request, RequestRecord)
    record = scores.record_to_score(ctx.principal, request.POST.get("record")) if _uuid(request) else None
    if record is None:
        messages.error(request, "That request is not in your organizations any more.")
        return _back(request, query)
    if request.POST.get("action") == "skip":
        skipped = request.session.get(_SKIPPED, {})
        skipped[name] = [*skipped.get(name, []), str(record.pk)][-_MAX_SKIPPED:]
        request.session[_SKIPPED] = skipped
        return _back(request, query)
    if not can_add(ctx.principal, Score, record.org):
        messages.error(request, f"Your role in {record.org.name} may read scores but not add them.")
        return _back(request, query)
    given = request.POST.get("score", "").strip()
    value, label = _value_or_label(given)
    try:
        services.score_create(
            actor=Actor.from_request(request, via="web"),
            record=record,
            name=name,
            value=value,
            label=label,
            comment=request.POST.get("comment", "")[:10_000],
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        shown = f"{value:g}" if value is not None else label
        messages.success(request, f"Scored {name} = {shown} on the request of {record.created_at:%Y-%m-%d %H:%M:%S}.")
    return _back(request, query)


def _uuid(request) -> bool:
    try:
        uuid.UUID(request.POST.get("record", ""))
    except ValueError:
        return False
    return True


def _value_or_label(given: str) -> tuple[float | None, str]:
    """A score as given: "v:4" (a queue's number button) or "4" is the number 4; "l:good" (a label button) or
    any other text is a label; "v:" with no number is neither (the service says what to give)."""
    kind, _, text = given.partition(":")
    if kind == "l" and text:
        return None, text
    try:
        number = float(text if kind == "v" else given)
    except ValueError:
        return None, "" if kind == "v" else given
    return (number, "") if math.isfinite(number) and abs(number) <= 1e12 else (None, given)
