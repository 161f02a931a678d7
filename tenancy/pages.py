"""What every app's server-rendered pages take from tenancy: the org picker in the page header."""

from __future__ import annotations

from django.db.models import Model
from django.http import Http404

from .permissions import VIEW, Principal, orgs_where


class OrgContext:
    """The orgs the signed-in user may see `model` in, and the one picked (`?org=slug`; else the first)."""

    def __init__(self, request, model: type[Model]):
        self.principal = Principal.for_user(request.user)
        self.orgs = list(orgs_where(self.principal, model, VIEW).order_by("name"))
        wanted = request.GET.get("org")
        self.org = next((o for o in self.orgs if o.slug == wanted), None) if wanted else None
        if wanted and self.org is None:
            raise Http404("No such organization, or not yours.")
        self.org = self.org or (self.orgs[0] if self.orgs else None)
