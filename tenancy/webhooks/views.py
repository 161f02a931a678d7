"""The webhooks page: an org's endpoints (with the notice of one disabled after failing), a form for a new one,
each endpoint's delivery log with "Send again", and "Send test event" / "Rotate secret". A new or rotated
secret is rendered into that one response, never kept in the session. Writes go through webhooks.services."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from ..audit import Actor
from ..models import WebhookDelivery, WebhookEndpoint
from ..pages import OrgContext
from ..permissions import CHANGE, DELETE, VIEW, Principal, can, can_add, restrict
from . import services
from .events import CATALOGUE

DELIVERIES_SHOWN = 50


class EndpointForm(forms.Form):
    url = forms.CharField(max_length=2000, label="URL", help_text="http(s), on a public address.")
    description = forms.CharField(max_length=500, required=False)
    events = forms.MultipleChoiceField(
        choices=[(t.name, t.name) for t in CATALOGUE.values()],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every event but the opt-in ones (request.failed, webhook.test).",
    )
    failed_statuses = forms.CharField(
        required=False, label="request.failed statuses", help_text="Comma-separated, such as 500, 502; empty: all."
    )

    def clean_failed_statuses(self) -> list[int]:
        text = self.cleaned_data["failed_statuses"].replace(",", " ").split()
        try:
            return [int(v) for v in text]
        except ValueError as exc:
            raise ValidationError("Give whole HTTP statuses, such as 500, 502.") from exc


def _page(org, **query) -> str:
    extra = "".join(f"&{k}={v}" for k, v in query.items())
    return f"{reverse('webhooks:list')}?org={org.slug}{extra}"


def _actor(request) -> Actor:
    return Actor.from_request(request, via="web")


@login_required
def endpoint_list(request):
    """The org's endpoints; `?endpoint=<id>` shows its delivery log. A POST creates an endpoint."""
    ctx = OrgContext(request, WebhookEndpoint)
    if ctx.org is None:
        return render(request, "tenancy/webhooks.html", {"orgs": ctx.orgs, "org": None})
    endpoints = list(restrict(WebhookEndpoint.objects.filter(org=ctx.org), ctx.principal, VIEW))
    may_add = can_add(ctx.principal, WebhookEndpoint, ctx.org)
    form, secret, made = EndpointForm(), None, None
    if request.method == "POST":
        if not may_add:
            messages.error(request, "Your role does not allow you to add webhook endpoints; ask an admin.")
            return HttpResponseRedirect(_page(ctx.org))
        form = EndpointForm(request.POST)
        if form.is_valid():
            try:
                made, secret = services.webhook_endpoint_create(actor=_actor(request), org=ctx.org, **form.cleaned_data)
                endpoints.append(made)
                form = EndpointForm()
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    for error in errors:
                        form.add_error(field if field in form.fields else None, error)
    shown = _shown_endpoint(request, endpoints)
    context = {
        "orgs": ctx.orgs,
        "org": ctx.org,
        "endpoints": endpoints,
        "disabled": [e for e in endpoints if e.disabled_reason],
        "form": form,
        "may_add": may_add,
        "secret": secret,
        "made": made,
        "shown": shown,
        "deliveries": _deliveries(shown),
    }
    failed = request.method == "POST" and made is None
    return render(request, "tenancy/webhooks.html", context, status=400 if failed else 200)


def _shown_endpoint(request, endpoints: list[WebhookEndpoint]) -> WebhookEndpoint | None:
    wanted = request.GET.get("endpoint")
    if not wanted:
        return None
    found = next((e for e in endpoints if str(e.pk) == wanted), None)
    if found is None:
        raise Http404("No such endpoint in this organization.")
    return found


def _deliveries(endpoint: WebhookEndpoint | None) -> list[WebhookDelivery]:
    if endpoint is None:
        return []
    return list(WebhookDelivery.objects.filter(endpoint=endpoint).select_related("event")[:DELIVERIES_SHOWN])


def _endpoint(request, pk: int, action: str) -> WebhookEndpoint:
    principal = Principal.for_user(request.user)
    endpoint = get_object_or_404(restrict(WebhookEndpoint.objects.select_related("org"), principal, VIEW), pk=pk)
    if not can(principal, action, endpoint):
        raise Http404("No such endpoint, or not yours to change.")
    return endpoint


@login_required
@require_POST
def endpoint_test(request, pk):
    endpoint = _endpoint(request, pk, CHANGE)
    try:
        services.webhook_send_test(actor=_actor(request), endpoint=endpoint)
        messages.success(request, "Test event queued; it shows in the delivery log below.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return HttpResponseRedirect(_page(endpoint.org, endpoint=endpoint.pk))


@login_required
@require_POST
def endpoint_rotate(request, pk):
    endpoint = _endpoint(request, pk, CHANGE)
    secret = services.webhook_endpoint_rotate_secret(
        actor=_actor(request), endpoint=endpoint, overlap=services.DEFAULT_OVERLAP
    )
    endpoint.refresh_from_db()
    context = {"org": endpoint.org, "orgs": [endpoint.org], "rotated": endpoint, "secret": secret}
    return render(request, "tenancy/webhook_secret.html", context)


@login_required
@require_POST
def endpoint_toggle(request, pk):
    endpoint = _endpoint(request, pk, CHANGE)
    enable = not endpoint.enabled
    services.webhook_endpoint_update(actor=_actor(request), endpoint=endpoint, enabled=enable)
    messages.success(request, f"Endpoint {'enabled' if enable else 'disabled'}.")
    return HttpResponseRedirect(_page(endpoint.org))


@login_required
@require_POST
def endpoint_delete(request, pk):
    endpoint = _endpoint(request, pk, DELETE)
    services.webhook_endpoint_delete(actor=_actor(request), endpoint=endpoint)
    messages.success(request, "Endpoint deleted.")
    return HttpResponseRedirect(_page(endpoint.org))


@login_required
@require_POST
def delivery_redeliver(request, pk):
    principal = Principal.for_user(request.user)
    rows = WebhookDelivery.objects.select_related("endpoint__org")
    delivery = get_object_or_404(restrict(rows, principal, VIEW), pk=pk)
    if not can(principal, CHANGE, delivery):
        raise Http404("No such delivery, or not yours to send again.")
    try:
        services.webhook_redeliver(actor=_actor(request), delivery=delivery)
        messages.success(request, "Queued again; the new delivery is at the top of the log.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return HttpResponseRedirect(_page(delivery.endpoint.org, endpoint=delivery.endpoint_id))
