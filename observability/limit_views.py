"""The budgets and rate limits pages: each budget with its spend this period (from the records), what requests
in flight hold, a progress bar, when it resets in the org's time zone and its recent alerts; each rate limit; and
forms to create, change or delete them (for the roles that may). Writes go through tenancy.limits, like the
API's. They live here, not in tenancy, because spend is observability's to read."""

from __future__ import annotations

from decimal import Decimal

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from tenancy import limits as services
from tenancy.audit import Actor
from tenancy.forms import BudgetForm, RateLimitForm
from tenancy.models import Budget, BudgetEvent, Organization, Period, RateLimit
from tenancy.pages import OrgContext
from tenancy.periods import zone
from tenancy.permissions import CHANGE, DELETE, VIEW, Principal, can, can_add, restrict
from tenancy.selectors import budget_config

from . import limits

EVENTS_SHOWN = 5

_PAGES = {
    Budget: {
        "form": BudgetForm,
        "template": "tenancy/budgets.html",
        "url": "limits:budgets",
        "noun": "budget",
        "create": services.budget_create,
        "update": lambda actor, obj, fields: services.budget_update(actor=actor, budget=obj, **fields),
        "delete": lambda actor, obj: services.budget_delete(actor=actor, budget=obj),
    },
    RateLimit: {
        "form": RateLimitForm,
        "template": "tenancy/rate_limits.html",
        "url": "limits:rate_limits",
        "noun": "rate limit",
        "create": services.rate_limit_create,
        "update": lambda actor, obj, fields: services.rate_limit_update(actor=actor, rate_limit=obj, **fields),
        "delete": lambda actor, obj: services.rate_limit_delete(actor=actor, rate_limit=obj),
    },
}


def _page_url(model, org: Organization) -> str:
    return f"{reverse(_PAGES[model]['url'])}?org={org.slug}"


def _level(percent: Decimal, thresholds: list[int]) -> str:
    """The bar's colour: ok below every threshold, warn past one, over at 100 % and beyond."""
    if percent >= 100:
        return "over"
    if any(percent >= t for t in thresholds):
        return "warn"
    return "ok"


def _with_spend(org: Organization, budgets: list[Budget]) -> None:
    """Set each budget's spend, reserved, percent, level, period end and recent events for the page."""
    tz = zone(org.timezone)
    reserved = limits.reserved_now(org, budgets)
    events: dict[int, list[BudgetEvent]] = {}
    recent = BudgetEvent.objects.filter(budget__in=budgets).order_by("-created_at", "-id")[: EVENTS_SHOWN * 20]
    for event in recent:
        events.setdefault(event.budget_id, []).append(event)
    for budget in budgets:
        spend = limits.budget_spend(org.pk, budget_config(budget), org.timezone)
        budget.spend = spend.total
        budget.top_user = spend.top_user
        budget.users = len(spend.by_user) if spend.by_user is not None else None
        budget.reserved = reserved.get(budget.pk, Decimal(0))
        used = budget.spend + budget.reserved
        budget.percent = min(used * 100 / budget.amount_usd, Decimal(999)) if budget.amount_usd else Decimal(0)
        budget.bar = min(budget.percent, Decimal(100))
        budget.level = _level(budget.percent, budget.thresholds or [])
        # Formatted here: the template's date filter would show it in the server's zone, not the org's.
        budget.resets = None if budget.period == Period.TOTAL else f"{spend.end.astimezone(tz):%Y-%m-%d %H:%M}"
        budget.recent_events = events.get(budget.pk, [])[:EVENTS_SHOWN]


def _initial(obj) -> dict:
    if obj is None:
        return {}
    data = {name: getattr(obj, name) for name in services.FIELDS[type(obj)]}
    if isinstance(obj, Budget):
        data["thresholds"] = ", ".join(str(t) for t in obj.thresholds)
    return data


def _save(request, model, org: Organization, obj, form):
    """Save the form through the services; their errors go on the form. The object, or None."""
    if not form.is_valid():
        return None
    page = _PAGES[model]
    actor = Actor.from_request(request, via="web")
    fields = {k: v for k, v in form.cleaned_data.items() if k in services.FIELDS[model]}
    fields["user_id"] = fields.get("user_id") or ""
    try:
        if obj is None:
            return page["create"](actor=actor, org=org, **fields)
        return page["update"](actor, obj, fields)
    except ValidationError as exc:
        for field, errors in (exc.message_dict if hasattr(exc, "error_dict") else {None: exc.messages}).items():
            for error in errors:
                form.add_error(field if field in form.fields else None, error)
        return None


def _page(request, model):
    ctx = OrgContext(request, model)
    page = _PAGES[model]
    if ctx.org is None:
        return render(request, page["template"], {"orgs": ctx.orgs, "org": None})
    editing = None
    pk = request.POST.get("pk") if request.method == "POST" else request.GET.get("edit")
    if pk:
        if not (pk.isascii() and pk.isdigit()):
            raise Http404
        editing = get_object_or_404(restrict(model.objects.filter(org=ctx.org), ctx.principal, VIEW), pk=pk)
    may_add = can_add(ctx.principal, model, ctx.org)
    may_manage = can(ctx.principal, CHANGE, editing) if editing else may_add
    if request.method == "POST":
        if not may_manage:
            messages.error(request, f"Your role does not allow you to change {page['noun']}s; ask an admin.")
            return HttpResponseRedirect(_page_url(model, ctx.org))
        form = page["form"](request.POST, org=ctx.org)
        saved = _save(request, model, ctx.org, editing, form)
        if saved is not None:
            messages.success(request, f"{page['noun'].capitalize()} {saved} saved.")
            return HttpResponseRedirect(_page_url(model, ctx.org))
    else:
        form = page["form"](initial=_initial(editing), org=ctx.org) if editing else page["form"](org=ctx.org)
    rows = list(
        restrict(model.objects.filter(org=ctx.org), ctx.principal, VIEW)
        .select_related("team", "app", "key")
        .order_by("scope", "pk")
    )
    if model is Budget:
        _with_spend(ctx.org, rows)
    context = {
        "orgs": ctx.orgs,
        "org": ctx.org,
        "rows": rows,
        "form": form,
        "editing": editing,
        "may_add": may_add,
        "may_manage": may_manage,
    }
    return render(request, page["template"], context, status=400 if request.method == "POST" else 200)


def _delete(request, model, pk):
    principal = Principal.for_user(request.user)
    obj = get_object_or_404(restrict(model.objects.select_related("org"), principal, VIEW), pk=pk)
    noun = _PAGES[model]["noun"]
    if not can(principal, DELETE, obj):
        messages.error(request, f"Your role does not allow you to delete {noun}s; ask an admin.")
    else:
        shown = str(obj)
        _PAGES[model]["delete"](Actor.from_request(request, via="web"), obj)
        messages.success(request, f"{noun.capitalize()} {shown} deleted.")
    return HttpResponseRedirect(_page_url(model, obj.org))


@login_required
def budget_list(request):
    """The org's budgets with their spend; `?edit=<id>` puts one in the form; a POST saves it (new without `pk`)."""
    return _page(request, Budget)


@login_required
@require_POST
def budget_delete(request, pk):
    return _delete(request, Budget, pk)


@login_required
def rate_limit_list(request):
    """The org's rate limits; `?edit=<id>` puts one in the form; a POST saves it (new without `pk`)."""
    return _page(request, RateLimit)


@login_required
@require_POST
def rate_limit_delete(request, pk):
    return _delete(request, RateLimit, pk)
