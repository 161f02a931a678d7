"""The storage page: the org's bucket (secrets never shown, only their hints), the state of its export, its last
runs with their status, and "Run now". Settings are changed in the admin or through the API; only admins and
owners see the page's org (StorageExport is theirs in tenancy.permissions)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from tenancy.models import StorageExport
from tenancy.pages import OrgContext
from tenancy.permissions import CHANGE, Principal, can

from ..tasks import export_storage_org
from . import selectors

RUNS_SHOWN = 20


@login_required
def storage(request):
    ctx = OrgContext(request, StorageExport)
    export = runs = None
    if ctx.org is not None:
        export = selectors.exports_for(ctx.principal).filter(org=ctx.org).first()
        runs = list(selectors.runs_for(ctx.principal).filter(org=ctx.org)[:RUNS_SHOWN])
    context = {
        "orgs": ctx.orgs,
        "org": ctx.org,
        "export": export,
        "runs": runs,
        "last": runs[0] if runs else None,
        "may_run": export is not None and can(ctx.principal, CHANGE, export),
    }
    return render(request, "observability/storage.html", context)


@login_required
@require_POST
def storage_run(request, pk):
    """Export the org's due hours (and its waiting bodies) now, off the request: a Celery task on commit."""
    principal = Principal.for_user(request.user)
    export = get_object_or_404(selectors.exports_for(principal), pk=pk)
    if not can(principal, CHANGE, export):
        messages.error(request, "Your role does not allow you to run the export; ask an admin.")
    else:
        transaction.on_commit(lambda: export_storage_org.delay(export.org_id))
        messages.success(request, "Export started: its run appears below.")
    return HttpResponseRedirect(f"{reverse('storage:page')}?org={export.org.slug}")
