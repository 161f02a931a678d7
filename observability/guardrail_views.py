"""The guardrails page: an org's policies (what applies to whom, each check in a line) and its recent decisions
from the records (check, action, direction, masked hint; never the matched text). Policies are written in the
admin and through the API (tenancy.guardrails); this page reads. It lives here because decisions are records."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from tenancy.models import GuardrailPolicy
from tenancy.pages import OrgContext
from tenancy.permissions import VIEW, restrict

from . import selectors

DECISIONS_SHOWN = 50


def _summary(check: dict) -> str:
    """One line saying what a check looks for (its pattern, words, entities, models, limit or schema)."""
    kind = check.get("kind")
    if kind == "regex":
        return f"/{check.get('pattern', '')}/"
    if kind == "keywords":
        return ", ".join(check.get("words") or [])
    if kind == "pii":
        return ", ".join(check.get("entities") or ["every entity but PERSON"])
    if kind == "models":
        allow, deny = check.get("allow") or [], check.get("deny") or []
        return "; ".join(
            p for p in (f"allow {', '.join(allow)}" if allow else "", f"deny {', '.join(deny)}" if deny else "") if p
        )
    if kind == "max_size":
        return f"at most {check.get('max_chars')} characters"
    if kind == "json":
        return "JSON matching a schema" if check.get("schema") else "valid JSON"
    if kind == "moderation":
        return f"{check.get('provider', 'openai')}/{check.get('model', 'omni-moderation-latest')}"
    if kind == "judge":
        return f"{check.get('prompt')} with {check.get('model')}"
    return ""


@login_required
def guardrails(request):
    """Policies of the org picked in the header (admins and owners see them) and its recent guardrail decisions."""
    ctx = OrgContext(request, GuardrailPolicy)
    policies, decisions = [], []
    if ctx.org is not None:
        policies = list(
            restrict(GuardrailPolicy.objects.filter(org=ctx.org), ctx.principal, VIEW)
            .select_related("app", "key")
            .order_by("key", "app", "pk")
        )
        for policy in policies:
            policy.lines = [{**check, "summary": _summary(check)} for check in policy.checks]
        decisions = list(
            selectors.records_for(ctx.principal)
            .filter(org=ctx.org)
            .exclude(guardrail="")
            .select_related("app", "key")
            .only("id", "created_at", "model", "endpoint", "outcome", "guardrail", "guardrail_decisions", "app", "key")
            .order_by("-created_at")[:DECISIONS_SHOWN]
        )
    context = {"orgs": ctx.orgs, "org": ctx.org, "policies": policies, "decisions": decisions}
    return render(request, "observability/guardrails.html", context)
