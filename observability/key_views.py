"""The gateway keys page: an org's keys (scopes, last used, spend this month) for everyone who may see them, a
form to make one (its scopes capped by what the maker holds, the key shown once) and revoke buttons. It lives
beside the budgets pages because it reads spend from the rollups; writes go through tenancy.services, like the
API's, so the page grants and refuses exactly what the API does."""

from __future__ import annotations

import datetime

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Sum
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from tenancy import services
from tenancy.audit import Actor
from tenancy.models import APIKey, App, Organization, Scope
from tenancy.pages import OrgContext
from tenancy.permissions import CHANGE, VIEW, Principal, can_add, creator_role_subquery, grantable_scopes, restrict

from .models import RecordRollup


class KeyForm(forms.Form):
    app = forms.ModelChoiceField(queryset=App.objects.none(), empty_label=None)
    name = forms.CharField(max_length=200)
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple, initial=["proxy"])
    expires_at = forms.DateTimeField(
        required=False, label="Expires (optional)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )

    def __init__(self, *args, apps, grantable: frozenset[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["app"].queryset = apps
        # Only the scopes the maker may grant are offered; the service checks again when the key is made.
        self.fields["scopes"].choices = [(v, f"{v}: {label}") for v, label in Scope.choices if v in grantable]


def month_start(now: datetime.datetime) -> datetime.datetime:
    """The first hour of this UTC month: where "spend this month" starts (the hourly rollups' buckets are UTC)."""
    return now.astimezone(datetime.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def spend_this_month(org: Organization, key_ids: list[int]) -> dict[int, dict]:
    """Cost and requests of each key since the month began, from the hourly rollups (never raw records)."""
    rows = (
        RecordRollup.objects.filter(
            org=org, dimension="key", value__in=[str(k) for k in key_ids], bucket__gte=month_start(timezone.now())
        )
        .values("value")
        .annotate(cost=Sum("cost"), requests=Sum("requests"), unpriced=Sum("unpriced"), priced=Sum("priced"))
    )
    return {int(row["value"]): row for row in rows}


def _keys(ctx: OrgContext) -> list[APIKey]:
    actor = Actor(principal=ctx.principal)
    keys = list(
        restrict(APIKey.objects.filter(org=ctx.org), ctx.principal, VIEW)
        .select_related("app", "org", "created_by")
        .annotate(creator_role=creator_role_subquery())
        .order_by("revoked_at", "-created_at")
    )
    spend = spend_this_month(ctx.org, [k.pk for k in keys])
    for key in keys:
        key.spend = spend.get(key.pk, {"cost": None, "requests": 0, "unpriced": 0, "priced": 0})
        key.may_revoke = key.revoked_at is None and services.api_key_may_change(actor=actor, key=key)
    return keys


def _apps(ctx: OrgContext):
    """The apps the principal may make keys under: every app of the org for members and up, else the apps
    granted to them one by one."""
    apps = App.objects.filter(org=ctx.org).order_by("name")
    if can_add(ctx.principal, APIKey, ctx.org):
        return apps
    return restrict(apps, ctx.principal, CHANGE)


def _form(ctx: OrgContext, data=None) -> KeyForm:
    return KeyForm(data, apps=_apps(ctx), grantable=grantable_scopes(ctx.principal, ctx.org))


def _page(request, ctx: OrgContext, form: KeyForm | None = None, created: tuple[APIKey, str] | None = None, status=200):
    apps = _apps(ctx)
    form = form or _form(ctx)
    response = render(
        request,
        "tenancy/keys.html",
        {
            "orgs": ctx.orgs,
            "org": ctx.org,
            "keys": _keys(ctx),
            "form": form,
            "may_add": apps.exists(),
            "created": created,
            "month": month_start(timezone.now()),
        },
        status=status,
    )
    response["Cache-Control"] = "no-store"  # the page that shows a new key once is never kept by a cache
    return response


@login_required
def key_list(request):
    """The org's keys; a POST makes one and answers with the page showing its plaintext, once."""
    ctx = OrgContext(request, APIKey)
    if ctx.org is None:
        return render(request, "tenancy/keys.html", {"orgs": ctx.orgs, "org": None})
    if request.method != "POST":
        return _page(request, ctx)
    form = _form(ctx, request.POST)
    if not form.is_valid():
        return _page(request, ctx, form, status=400)
    try:
        key, plaintext = services.api_key_create(
            actor=Actor.from_request(request, via="web"),
            app=form.cleaned_data["app"],
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            expires_at=form.cleaned_data["expires_at"],
        )
    except ValidationError as exc:
        for field, errors in (exc.message_dict if hasattr(exc, "error_dict") else {None: exc.messages}).items():
            for error in errors:
                form.add_error(field if field in form.fields else None, error)
        return _page(request, ctx, form, status=400)
    return _page(request, ctx, created=(key, plaintext), status=201)


@login_required
@require_POST
def key_revoke(request, pk):
    principal = Principal.for_user(request.user)
    key = get_object_or_404(restrict(APIKey.objects.select_related("org"), principal, VIEW), pk=pk)
    try:
        services.api_key_revoke(actor=Actor.from_request(request, via="web"), key=key)
        messages.success(request, f"Key {key.name} ({key.display}) revoked: it stops working at once.")
    except PermissionDenied as exc:
        messages.error(request, str(exc))
    return HttpResponseRedirect(f"{reverse('keys:list')}?org={key.org.slug}")
