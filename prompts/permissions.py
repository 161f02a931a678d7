"""Who may move which label. Viewers read, members create versions and move labels, and only the roles in
INGATE_PROMPT_PROTECTED_ROLES move the labels in INGATE_PROMPT_PROTECTED_LABELS (production by default)."""

from __future__ import annotations

from django.conf import settings

from tenancy.models import Role, Scope
from tenancy.permissions import Principal, role_in

_MOVERS = {Role.MEMBER, Role.ADMIN, Role.OWNER}


def may_move_label(principal: Principal, prompt, name: str) -> bool:
    protected = name in settings.INGATE_PROMPT_PROTECTED_LABELS
    if principal.is_staff:
        return True
    if principal.key is not None:
        if principal.key.org_id != prompt.org_id:
            return False
        if protected:
            return Scope.ADMIN in principal.scopes
        return Scope.PROMPTS_WRITE in principal.scopes or Scope.ADMIN in principal.scopes
    role = role_in(principal, prompt.org)
    if role is None:
        return False
    return role in settings.INGATE_PROMPT_PROTECTED_ROLES if protected else role in _MOVERS
