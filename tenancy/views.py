"""The routes page: an org's routes (virtual models) with their targets and health, and a form to create, change
or delete one (for the roles that may). Writes go through tenancy.routes, like the API's."""

from __future__ import annotations

import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Prefetch
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from . import routes
from .audit import Actor
from .forms import RouteForm, target_formset
from .models import Organization, Route, RouteTarget
from .pages import OrgContext
from .permissions import CHANGE, DELETE, VIEW, Principal, can, can_add, restrict


def route_health(org: Organization, routes: list[Route]) -> dict[str, str]:
    """Each route's targets as the circuit breakers see them (proxy/routing/health.py: shared through Redis when
    set, else this process's), by route name: only targets that are not plainly healthy are named."""
    from proxy.relay import gateway

    known = {(h.key.provider, h.key.model, h.key.credential): h for h in gateway().health.snapshot(org.pk)}
    shown = {}
    for route in routes:
        notes = []
        for target in route.targets.all():
            credential = target.credential.name if target.credential_id else "default"
            health = known.get((target.provider, target.model, credential))
            if health is None or (health.state == "closed" and not health.failures):
                continue
            what = f"{target.provider}/{target.model}"
            if health.state == "open":
                until = datetime.datetime.fromtimestamp(health.opened_until or 0, datetime.UTC)
                notes.append(f"{what} paused until {until:%H:%M:%S} UTC")
            elif health.state == "half_open":
                notes.append(f"{what} on probation (next request probes it)")
            else:
                notes.append(f"{what} {health.failures} recent failure{'s' if health.failures != 1 else ''}")
            if health.last_failure is not None:
                notes[-1] += f" ({health.last_failure.describe()})"
        shown[route.name] = "; ".join(notes) or "all targets healthy"
    return shown


def _routes(ctx: OrgContext) -> list[Route]:
    targets = Prefetch("targets", queryset=RouteTarget.objects.select_related("credential").order_by("position", "pk"))
    found = list(restrict(Route.objects.filter(org=ctx.org), ctx.principal, VIEW).prefetch_related(targets))
    health = route_health(ctx.org, found)
    for route in found:
        route.health = health.get(route.name)
    return found


def _page_url(org: Organization, **query) -> str:
    extra = "".join(f"&{k}={v}" for k, v in query.items())
    return f"{reverse('tenancy:routes')}?org={org.slug}{extra}"


def _initial(route: Route | None) -> tuple[dict, list[dict]]:
    if route is None:
        return {}, []
    settings = {name: getattr(route, name) for name in routes.ROUTE_FIELDS}
    settings["retry_on_statuses"] = ", ".join(str(s) for s in route.retry_on_statuses)
    targets = [
        {
            "provider": t.provider,
            "model": t.model,
            "credential": t.credential.name if t.credential_id else "",
            "weight": t.weight,
            "params": routes.params_text(t.params),
        }
        for t in route.targets.all()
    ]
    return settings, targets


@login_required
def route_list(request):
    """The org's routes; `?edit=<id>` puts one in the form. A POST saves the form (a new route without `route`)."""
    ctx = OrgContext(request, Route)
    if ctx.org is None:
        return render(request, "tenancy/routes.html", {"orgs": ctx.orgs, "org": None})
    editing = None
    pk = request.POST.get("route") if request.method == "POST" else request.GET.get("edit")
    if pk:
        if not (pk.isascii() and pk.isdigit()):
            raise Http404
        editing = get_object_or_404(restrict(Route.objects.filter(org=ctx.org), ctx.principal, VIEW), pk=pk)
    may_manage = can(ctx.principal, CHANGE, editing) if editing else can_add(ctx.principal, Route, ctx.org)
    settings, targets = _initial(editing)
    if request.method == "POST":
        if not may_manage:
            messages.error(request, "Your role does not allow you to change routes; ask an admin.")
            return HttpResponseRedirect(_page_url(ctx.org))
        form, rows = RouteForm(request.POST), target_formset(ctx.org, request.POST)
        saved = _save(request, ctx.org, editing, form, rows)
        if saved is not None:
            messages.success(request, f"Route {saved.name} saved.")
            return HttpResponseRedirect(_page_url(ctx.org))
    else:
        form = RouteForm(initial=settings) if editing else RouteForm()
        rows = target_formset(ctx.org, initial=targets)
    context = {
        "orgs": ctx.orgs,
        "org": ctx.org,
        "routes": _routes(ctx),
        "form": form,
        "rows": rows,
        "editing": editing,
        "may_add": can_add(ctx.principal, Route, ctx.org),
        "may_manage": may_manage,
    }
    return render(request, "tenancy/routes.html", context, status=400 if request.method == "POST" else 200)


def _save(request, org: Organization, route: Route | None, form: RouteForm, rows) -> Route | None:
    """Save the form through the route services; their errors go on the form. The route, or None."""
    if not (form.is_valid() and rows.is_valid()):
        return None
    targets = rows.targets()
    actor = Actor.from_request(request, via="web")
    try:
        for target in targets:
            target["credential"] = routes.credential_by_name(org, target["credential"])
        if route is None:
            return routes.route_create(actor=actor, org=org, targets=targets, **form.cleaned_data)
        return routes.route_update(actor=actor, route=route, targets=targets, **form.cleaned_data)
    except ValidationError as exc:
        for field, errors in (exc.message_dict if hasattr(exc, "error_dict") else {None: exc.messages}).items():
            for error in errors:
                form.add_error(field if field in form.fields else None, error)
        return None


@login_required
@require_POST
def route_delete(request, pk):
    principal = Principal.for_user(request.user)
    route = get_object_or_404(restrict(Route.objects.select_related("org"), principal, VIEW), pk=pk)
    if not can(principal, DELETE, route):
        messages.error(request, "Your role does not allow you to delete routes; ask an admin.")
    else:
        routes.route_delete(actor=Actor.from_request(request, via="web"), route=route)
        messages.success(request, f"Route {route.name} deleted.")
    return HttpResponseRedirect(_page_url(route.org))
