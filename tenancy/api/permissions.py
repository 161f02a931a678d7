"""API access: who is calling (user or gateway key) and whether a key carries the scope a view needs."""

from __future__ import annotations

from rest_framework import permissions
from rest_framework.request import Request

from ..keys import AUTHENTICATION_REQUIRED
from ..models import Scope
from ..permissions import Principal


def principal_of(request: Request) -> Principal:
    if isinstance(request.auth, Principal):
        return request.auth
    user = request.user
    if user is not None and user.is_authenticated and user.is_active:
        return Principal.for_user(user)
    return Principal()


class IsAuthenticatedPrincipal(permissions.BasePermission):
    """A signed-in user, or a gateway key holding the view's `required_scope` (default: `admin`)."""

    def has_permission(self, request, view) -> bool:
        principal = principal_of(request)
        if principal.key is not None:
            needed = getattr(view, "required_scope", Scope.ADMIN)
            if needed is not None and needed not in principal.scopes:
                self.message = f"This gateway key lacks the '{needed}' scope needed here."
                return False
            return True
        if principal.user is None:
            self.message = AUTHENTICATION_REQUIRED
            return False
        return True
