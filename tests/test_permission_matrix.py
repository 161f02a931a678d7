"""The whole API's permission matrix (tests/matrix.py): every endpoint × action × principal (each role, staff, a
user of no org, gateway keys by scope) × own org / another org → what the documented rules call for.

Who may do what, as declared below, comes from README "Roles and keys", docs/security.md, README's prompts and
evals sections (keys: `logs:read`, `prompts:read`/`prompts:write`, `evals:run`, `admin`) and each app's
`grant()` where the docs say nothing more precise. Written out by hand, so that a change to the rules fails here.
"""

import datetime
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import Client
from django.utils import timezone

from evals import services as evals
from evals.models import Dataset
from evals.transfer import clean_item
from observability import rollups
from observability import services as observability
from observability.models import RequestBody, RequestRecord, Score
from prompts import services as prompts
from prompts.models import Label, Namespace, Prompt
from tenancy import cache, crypto, guardrails, limits, routes, storage
from tenancy.audit import Actor
from tenancy.models import (
    AuditLog,
    BudgetEvent,
    Role,
    StorageExport,
    StorageExportRun,
    TeamMembership,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from tenancy.tests.factories import MembershipFactory, UserFactory, make_credential
from tenancy.webhooks.signing import new_secret
from tests.matrix import (
    ADMINS,
    API,
    EVERYONE,
    MEMBERS,
    NOBODY,
    OWNERS,
    ROLES,
    Action,
    Endpoint,
    Matrix,
    Outcome,
    Target,
    clients_for,
    create,
    custom,
    delete,
    list_,
    retrieve,
    rows,
    run,
    update,
)

MATRIX = Matrix()
SYSTEM = Actor.system("test")
ADMIN_KEY = {"read_scopes": frozenset({"admin"}), "write_scopes": frozenset({"admin"})}
NO_KEY: tuple = ()  # no gateway key may, whatever its scopes


def org_body(**fields):
    return lambda t, who: {"org": t.org.pk, **fields}


def fixed(payload):
    return lambda t, who: payload


# --- tenancy (README "Roles and keys"; a key with `admin` acts as an org admin, in its own org) ------------


MATRIX.register(
    Endpoint(
        "organizations",
        lambda world, tenant: Target(tenant, tenant.org),
        **ADMIN_KEY,
        actions=(
            list_(),
            retrieve(),
            # Only staff create organizations: there is no org of the caller's to put it in.
            create(fixed({"name": "New Org"}), roles=NOBODY, keys=NO_KEY, elsewhere=403),
            update(fixed({"name": "Renamed Org"}), roles=ADMINS),
            delete(roles=OWNERS, keys=NO_KEY),  # deleting the org is the owners' alone: an admin key may not
        ),
    )
)

MATRIX.register(
    Endpoint(
        "teams",
        lambda world, tenant: Target(tenant, tenant.team),
        **ADMIN_KEY,
        actions=(
            list_(),
            retrieve(),
            create(org_body(name="New team"), roles=ADMINS),
            update(fixed({"name": "Renamed"}), roles=ADMINS),
            delete(roles=ADMINS),
        ),
    )
)


def _team_membership(world, tenant):
    newcomer = UserFactory(username=f"new-{tenant.org.slug}")
    MembershipFactory(org=tenant.org, user=newcomer, role=Role.VIEWER)
    extra = TeamMembership.objects.create(team=tenant.team, user=tenant.users["viewer"])
    return Target(tenant, extra, extra={"newcomer": newcomer.username})


MATRIX.register(
    Endpoint(
        "team-memberships",
        _team_membership,
        **ADMIN_KEY,
        actions=(
            list_(),
            retrieve(),
            create(lambda t, who: {"team": t.tenant.team.pk, "user": t.newcomer}, roles=ADMINS),
            delete(roles=ADMINS),
        ),
    )
)

MATRIX.register(
    Endpoint(
        "apps",
        lambda world, tenant: Target(tenant, tenant.app),
        **ADMIN_KEY,
        actions=(
            list_(),
            retrieve(),
            create(org_body(name="New app"), roles=MEMBERS),
            update(fixed({"name": "Renamed"}), roles=MEMBERS),
            delete(roles=ADMINS),
        ),
    )
)


def _membership(world, tenant):
    extra = MembershipFactory(org=tenant.org, role=Role.MEMBER)
    return Target(tenant, extra, extra={"joiner": UserFactory(username=f"joiner-{tenant.org.slug}").username})


MATRIX.register(
    Endpoint(
        "memberships",
        _membership,
        **ADMIN_KEY,
        actions=(
            list_(),
            retrieve(),
            create(lambda t, who: {"org": t.org.pk, "user": t.joiner, "role": "member"}, roles=ADMINS),
            update(fixed({"role": "viewer"}), roles=ADMINS),
            delete(roles=ADMINS),
        ),
    )
)


def _key_body(t, who):
    # A key mints within its own scopes (test_grants.py covers the caps); people mint a `proxy` key.
    return {"app": t.tenant.app.pk, "name": "k", "scopes": sorted(who.scopes) if who.is_key else ["proxy"]}


# The target key was made by the system: below admin one changes only the keys one made (test_grants.py).
MATRIX.register(
    Endpoint(
        "keys",
        lambda world, tenant: Target(tenant, tenant.key),
        **ADMIN_KEY,
        actions=(
            list_(),
            retrieve(),
            create(_key_body, roles=MEMBERS),
            update(fixed({"name": "Renamed"}), roles=ADMINS),
            delete(roles=ADMINS),
            custom("revoke", "post", roles=ADMINS),
        ),
    )
)

MATRIX.register(
    Endpoint(
        "provider-credentials",
        lambda world, tenant: Target(tenant, make_credential(tenant.org)),
        **ADMIN_KEY,
        actions=(
            list_(),
            retrieve(),
            create(org_body(provider="anthropic", secret="sk-ant-xyz"), roles=ADMINS),
            update(fixed({"base_url": "https://example.com/v1"}), roles=ADMINS),
            delete(roles=ADMINS),
        ),
    )
)

ROUTE_TARGETS = [{"provider": "openai", "model": "gpt-4o"}, {"provider": "anthropic", "model": "claude-3-5-haiku"}]


def _route(world, tenant):
    route = routes.route_create(actor=SYSTEM, org=tenant.org, name="smart", targets=ROUTE_TARGETS)
    return Target(tenant, route)


# Routes decide where the org's requests go and with which of its keys: managed like provider credentials.
MATRIX.register(
    Endpoint(
        "routes",
        _route,
        **ADMIN_KEY,
        actions=(
            list_(),
            retrieve(),
            create(org_body(name="fast", targets=ROUTE_TARGETS[:1]), roles=ADMINS),
            update(fixed({"strategy": "loadbalance", "targets": ROUTE_TARGETS[::-1]}), roles=ADMINS),
            delete(roles=ADMINS),
        ),
    )
)


# Budgets and rate limits decide whose requests are refused: managed like routes; everyone in the org reads them
# and the alerts their budgets recorded.
def _budget(world, tenant):
    return Target(tenant, limits.budget_create(actor=SYSTEM, org=tenant.org, amount_usd=Decimal("10")))


MATRIX.register(
    Endpoint(
        "budgets",
        _budget,
        **ADMIN_KEY,
        actions=(
            list_(),
            retrieve(),
            create(
                lambda t, who: {"org": t.org.pk, "scope": "app", "app": t.tenant.app.pk, "amount_usd": "5"},
                roles=ADMINS,
            ),
            update(fixed({"hard": False, "thresholds": [90]}), roles=ADMINS),
            delete(roles=ADMINS),
        ),
    )
)


def _rate_limit(world, tenant):
    return Target(tenant, limits.rate_limit_create(actor=SYSTEM, org=tenant.org, requests_per_minute=60))


MATRIX.register(
    Endpoint(
        "rate-limits",
        _rate_limit,
        **ADMIN_KEY,
        actions=(
            list_(),
            retrieve(),
            create(
                lambda t, who: {"org": t.org.pk, "scope": "key", "key": t.tenant.key.pk, "concurrent": 2}, roles=ADMINS
            ),
            update(fixed({"tokens_per_minute": 10000}), roles=ADMINS),
            delete(roles=ADMINS),
        ),
    )
)


def _budget_event(world, tenant):
    made = limits.budget_create(actor=SYSTEM, org=tenant.org, amount_usd=Decimal("10"))
    event = BudgetEvent.objects.create(
        budget=made,
        org=tenant.org,
        kind="threshold",
        threshold=50,
        period_start=timezone.now(),
        spend=Decimal("5"),
        amount_usd=made.amount_usd,
    )
    return Target(tenant, event)


MATRIX.register(
    Endpoint("budget-events", _budget_event, **ADMIN_KEY, actions=(list_(), retrieve())),
)


# The response cache decides what the org's requests are answered with: its settings are managed like budgets
# (everyone in the org reads them), and purging it is an admin's.
def _cache_settings(world, tenant):
    return Target(tenant, cache.cache_settings_create(actor=SYSTEM, org=tenant.org, enabled=True))


MATRIX.register(
    Endpoint(
        "cache-settings",
        _cache_settings,
        **ADMIN_KEY,
        actions=(
            list_(),
            retrieve(),
            create(lambda t, who: {"org": t.org.pk, "app": t.tenant.app.pk, "enabled": True}, roles=ADMINS),
            update(fixed({"ttl_seconds": 600, "endpoints": ["chat.completions"]}), roles=ADMINS),
            delete(roles=ADMINS),
        ),
    )
)


# Guardrail policies decide what may be sent and answered: admins and owners alone read and manage them.
def _guardrail_policy(world, tenant):
    return Target(tenant, guardrails.guardrail_policy_create(actor=SYSTEM, org=tenant.org, name="default"))


MATRIX.register(
    Endpoint(
        "guardrail-policies",
        _guardrail_policy,
        **ADMIN_KEY,
        readers=ADMINS,
        actions=(
            list_(),
            retrieve(),
            create(lambda t, who: {"org": t.org.pk, "app": t.tenant.app.pk, "name": "app policy"}, roles=ADMINS),
            update(fixed({"checks": [{"name": "pii", "kind": "pii", "action": "redact"}]}), roles=ADMINS),
            delete(roles=ADMINS),
        ),
    )
)

MATRIX.register(
    Endpoint(
        "cache-purge",
        lambda world, tenant: Target(tenant),
        **ADMIN_KEY,
        actions=(Action("purge", method="post", detail=False, body=org_body(namespace="support"), roles=ADMINS),),
    )
)


# The org's own bucket holds all its records: admins and owners alone see and manage it, like the audit log.
def _storage_export(world, tenant):
    export = storage.storage_export_create(actor=SYSTEM, org=tenant.org, bucket=f"{tenant.org.slug}-bucket")
    return Target(tenant, export)


def _new_bucket(t, who):
    """A create's body, for an org whose bucket is first removed (one per org; rolled back after each case)."""
    StorageExport.objects.filter(org=t.org).delete()
    return {"org": t.org.pk, "bucket": "another-bucket", "endpoint_url": ""}


MATRIX.register(
    Endpoint(
        "storage-exports",
        _storage_export,
        **ADMIN_KEY,
        readers=ADMINS,
        actions=(
            list_(),
            retrieve(),
            create(_new_bucket, roles=ADMINS),
            update(fixed({"every_hours": 6, "secret_key": "rotated-secret"}), roles=ADMINS),
            delete(roles=ADMINS),
        ),
    )
)

MATRIX.register(
    Endpoint(
        "storage-export-runs",
        lambda world, tenant: Target(
            tenant, StorageExportRun.objects.create(org=tenant.org, status="failed", error="NoSuchBucket")
        ),
        **ADMIN_KEY,
        readers=ADMINS,
        actions=(list_(), retrieve()),
    )
)

MATRIX.register(
    Endpoint(
        "audit-log",
        lambda world, tenant: Target(tenant, AuditLog.objects.filter(org=tenant.org).first()),
        **ADMIN_KEY,
        readers=ADMINS,
        actions=(list_(), retrieve()),
    )
)


# Webhooks send the org's events to a URL of one's choosing, and their log holds the payloads: admins and owners
# only, like the audit log. The targets point at a loopback port nothing listens on and the instance refuses
# private addresses, so whatever the matrix makes fire is refused at send time without touching the network.
def _webhook_endpoint(world, tenant):
    endpoint = WebhookEndpoint.objects.create(
        org=tenant.org, url="http://127.0.0.1:9/hook", secret_encrypted=crypto.encrypt(new_secret())
    )
    return Target(tenant, endpoint)


def _webhook_delivery(world, tenant):
    endpoint = _webhook_endpoint(world, tenant).obj
    event = WebhookEvent.objects.create(
        id=f"evt_matrix_{tenant.org.pk}", org=tenant.org, type="webhook.test", payload={}
    )
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, event=event, org=tenant.org, status="delivered")
    return Target(tenant, delivery)


MATRIX.register(
    Endpoint(
        "webhook-endpoints",
        _webhook_endpoint,
        **ADMIN_KEY,
        readers=ADMINS,
        actions=(
            list_(),
            retrieve(),
            create(org_body(url="https://93.184.215.14/hooks", enabled=False), roles=ADMINS),
            update(fixed({"description": "ops"}), roles=ADMINS),
            delete(roles=ADMINS),
            custom("rotate_secret", "post", url_path="rotate-secret", roles=ADMINS),
            custom("test_event", "post", url_path="test-event", ok=202, roles=ADMINS),
            custom("deliveries", roles=ADMINS),
        ),
    )
)

MATRIX.register(
    Endpoint(
        "webhook-deliveries",
        _webhook_delivery,
        **ADMIN_KEY,
        readers=ADMINS,
        actions=(list_(), retrieve(), custom("redeliver", "post", ok=202, roles=ADMINS)),
    )
)


# --- observability (README "Records"; observability/apps.py: everyone reads records, admins change settings
# and prices; keys: `logs:read` for records, `admin` for settings and prices) -------------------------------


def _record(world, tenant):
    session = f"{tenant.org.slug}-session"
    record = RequestRecord.objects.create(
        org=tenant.org,
        app=tenant.app,
        key=tenant.key,
        provider="openai",
        endpoint="chat.completions",
        model="gpt-4o-mini",
        status=200,
        input_tokens=10,
        output_tokens=5,
        total_tokens=15,
        cost_total=Decimal("0.001"),
        total_ms=100.0,
        usage_source="reported",
        session_id=session,
        created_at=timezone.now() - datetime.timedelta(minutes=5),
    )
    return Target(tenant, record, row_id=str(record.pk), extra={"session": session})


def _of_session(**query):
    # Collection reads are narrowed to the target's session, so "shown" means that org's record counted.
    return lambda t: {"session": t.session, **query}


MATRIX.register(
    Endpoint(
        "records",
        _record,
        read_scopes=frozenset({"logs:read"}),
        write_scopes=NOBODY,
        actions=(
            list_(),
            retrieve(),
            custom("series", detail=False, query=_of_session(), shows=lambda data, t: any(p["requests"] for p in data)),
            custom("totals", detail=False, query=_of_session(), shows=lambda data, t: data["requests"] > 0),
            custom(
                "sessions",
                detail=False,
                query=_of_session(),
                shows=lambda data, t: any(row["session_id"] == t.session for row in rows(data)),
            ),
            custom(
                "export",
                detail=False,
                query=_of_session(export_format="jsonl"),
                shows=lambda data, t: t.row_id.encode() in data,
            ),
        ),
    )
)


# Scores (README "Feedback: scores and the review queue"; observability/apps.py): everyone who reads records reads
# scores; members and up add them. Keys: `logs:read` reads them, `scores:write` adds and reads them.
def _score(world, tenant):
    record = _record(world, tenant).obj
    score = observability.score_create(actor=SYSTEM, record=record, name="helpful", value=1)
    return Target(tenant, score, extra={"record": str(record.pk)})


MATRIX.register(
    Endpoint(
        "scores",
        _score,
        read_scopes=frozenset({"logs:read", "scores:write"}),
        write_scopes=frozenset({"scores:write"}),
        actions=(
            list_(),
            retrieve(),
            # Another org's request id is unknown: a 400 on request_id.
            create(
                lambda t, who: {"request_id": t.record, "name": "tone", "label": "kind"}, roles=MEMBERS, elsewhere=400
            ),
        ),
    )
)


def _settings(world, tenant):
    row = observability.observability_settings_set(actor=SYSTEM, org=tenant.org, body_mode="metadata")
    return Target(tenant, row, lookup=tenant.org.pk, row_field="org", row_id=tenant.org.pk)


MATRIX.register(
    Endpoint(
        "observability-settings",
        _settings,
        **ADMIN_KEY,
        actions=(
            list_(),
            retrieve(),
            create(org_body(body_mode="full"), roles=ADMINS),  # creates or replaces the org's settings
            update(fixed({"retention_days": 7}), roles=ADMINS),
        ),
    )
)


def _price(world, tenant):
    override = observability.price_override_create(
        actor=SYSTEM, org=tenant.org, model="my-model", input_per_mtok=Decimal("1"), output_per_mtok=Decimal("2")
    )
    return Target(tenant, override)


MATRIX.register(
    Endpoint(
        "price-overrides",
        _price,
        **ADMIN_KEY,
        actions=(
            list_(),
            retrieve(),
            create(org_body(model="new-model", input_per_mtok="1.5", output_per_mtok="3"), roles=ADMINS),
            update(fixed({"input_per_mtok": "2.5"}), roles=ADMINS),
            delete(roles=ADMINS),
        ),
    )
)


# --- prompts (README "Prompts": viewers read; members create versions and move labels; only admins and owners
# move `production`. Keys: `prompts:read`, `prompts:write`; a protected label takes `admin` as well) ----------

PROMPT_KEYS = {
    "read_scopes": frozenset({"prompts:read", "prompts:write"}),
    "write_scopes": frozenset({"prompts:write"}),
}
PROTECTED = (frozenset({"prompts:write", "admin"}),)

MATRIX.register(
    Endpoint(
        "prompt-namespaces",
        lambda world, tenant: Target(tenant, prompts.namespace_create(actor=SYSTEM, org=tenant.org, path="support")),
        **PROMPT_KEYS,
        actions=(
            list_(),
            retrieve(),
            create(org_body(path="new/space"), roles=MEMBERS),
            update(fixed({"description": "changed"}), roles=MEMBERS),
        ),
    )
)


def _prompt(world, tenant):
    """Two versions; staging at v1, production moved from v1 to v2 (so it can be rolled back)."""
    prompt = prompts.prompt_create(actor=SYSTEM, org=tenant.org, namespace="support/billing", name="refunds")
    first, second = (
        prompts.version_create(actor=SYSTEM, prompt=prompt, messages=[{"role": "system", "content": text}])
        for text in ("You help {{company}}.", "You help {{company}}. Be brief.")
    )
    prompts.label_set(actor=SYSTEM, prompt=prompt, name="staging", version=first)
    prompts.label_set(actor=SYSTEM, prompt=prompt, name="production", version=first)
    prompts.label_set(actor=SYSTEM, prompt=prompt, name="production", version=second)
    return Target(tenant, prompt)


MATRIX.register(
    Endpoint(
        "prompts",
        _prompt,
        **PROMPT_KEYS,
        actions=(
            list_(),
            retrieve(),
            create(org_body(namespace="new", name="fresh"), roles=MEMBERS),
            update(fixed({"description": "changed"}), roles=MEMBERS),
            custom("versions"),
            custom("versions", "post", body=fixed({"template": "hi"}), ok=201, roles=MEMBERS, label="versions (new)"),
            custom(
                "labels", "post", body=fixed({"name": "staging", "version": 2}), roles=MEMBERS, label="labels (staging)"
            ),
            custom(
                "labels",
                "post",
                body=fixed({"name": "production", "version": 1}),
                roles=ADMINS,
                keys=PROTECTED,
                label="labels (production)",
            ),
            custom(
                "promote",
                "post",
                body=fixed({"source": "staging", "target": "production"}),
                roles=ADMINS,
                keys=PROTECTED,
            ),
            custom("rollback", "post", body=fixed({"label": "production"}), roles=ADMINS, keys=PROTECTED),
            custom("history"),
            # Rendering changes nothing and every role may, but it is a POST: a key needs `prompts:write` for it.
            custom("render", "post", body=fixed({"version": 1, "variables": {"company": "Acme"}})),
            custom("diff", query=lambda t: {"from": 1, "to": 2}),
            custom("archive", "post", roles=MEMBERS),
        ),
    )
)


# --- evals (README "Evals"; evals/apps.py: everyone reads, members and up change datasets and queue or cancel
# runs. Keys: `evals:run`) -------------------------------------------------------------------------------------

EVAL_KEYS = {"read_scopes": frozenset({"evals:run"}), "write_scopes": frozenset({"evals:run"})}
CAPITALS = [{"input": "Capital of France?", "expected": "Paris"}, {"input": "Capital of Peru?", "expected": "Lima"}]
RUN = {"targets": [{"model": "gpt-4o"}], "evaluators": [{"kind": "exact_match"}]}


def _capitals(tenant):
    return evals.dataset_create(actor=SYSTEM, org=tenant.org, name="capitals", items=[clean_item(i) for i in CAPITALS])


def _dataset(world, tenant):
    dataset = _capitals(tenant)
    record = RequestRecord.objects.create(
        org=tenant.org, provider="openai", endpoint="chat.completions", model="gpt-4o-mini", status=200
    )
    RequestBody.objects.create(
        record=record,
        request=json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Capital of Chile?"}]}),
        response=json.dumps({"choices": [{"message": {"role": "assistant", "content": "Santiago"}}]}),
    )
    first_item = dataset.latest.items.order_by("position").first()
    return Target(tenant, dataset, extra={"record": str(record.pk), "item": str(first_item.key)})


def _upload(t, who):
    line = json.dumps({"input": "Capital of Chile?", "expected": "Santiago"}) + "\n"
    return {"file": SimpleUploadedFile("more.jsonl", line.encode()), "mode": "append"}


MATRIX.register(
    Endpoint(
        "datasets",
        _dataset,
        **EVAL_KEYS,
        actions=(
            list_(),
            retrieve(),
            create(org_body(name="fresh"), roles=MEMBERS),
            update(fixed({"description": "changed"}), roles=MEMBERS),
            custom("archive", "post", roles=MEMBERS),
            custom("versions"),
            custom("items"),
            custom(
                "items",
                "post",
                body=fixed({"items": [{"input": "Capital of Chile?", "expected": "Santiago"}]}),
                ok=201,
                roles=MEMBERS,
                label="items (add)",
            ),
            custom("remove-items", "post", body=lambda t, who: {"keys": [t.item]}, ok=201, roles=MEMBERS),
            custom("import", "post", body=_upload, multipart=True, ok=201, roles=MEMBERS),
            custom("export", query=lambda t: {"export_format": "csv"}),
            # Only records the caller may read are used: a key needs `logs:read` as well, else the record is unknown.
            custom(
                "from-records",
                "post",
                body=lambda t, who: {"records": [t.record]},
                ok=201,
                roles=MEMBERS,
                keys=(frozenset({"evals:run", "logs:read"}),),
                keys_refused=Outcome(400, names=frozenset({"records"})),
            ),
        ),
    )
)


def _run(world, tenant):
    dataset = _capitals(tenant)
    run = evals.run_create(actor=SYSTEM, org=tenant.org, dataset_version=dataset.latest, queue=False, **RUN)
    return Target(tenant, run, extra={"version": dataset.latest.pk})


MATRIX.register(
    Endpoint(
        "eval-runs",
        _run,
        **EVAL_KEYS,
        actions=(
            list_(),
            retrieve(),
            # Queued once the transaction commits: in a test it never does, so nothing runs.
            create(lambda t, who: {"org": t.org.pk, "dataset_version": t.version, **RUN}, roles=MEMBERS),
            custom("cancel", "post", roles=MEMBERS),
            custom("results"),
        ),
    )
)

MATRIX.register(
    Endpoint(
        "eval-comparisons",
        _run,
        **EVAL_KEYS,
        actions=(
            # Runs are named in the query: another org's is not found.
            Action("compare", detail=False, query=lambda t: {"a": t.obj.pk, "b": t.obj.pk}, elsewhere=404),
        ),
    )
)

MATRIX.register(
    Endpoint(
        "evaluators",
        lambda world, tenant: Target(tenant),
        **EVAL_KEYS,
        actions=(
            Action("catalogue", detail=False, elsewhere=200),  # the same for everyone: no org's data in it
        ),
    )
)


# --- the tests ---------------------------------------------------------------------------------------------


@pytest.fixture
def clients(world, client_for):
    return clients_for(world, client_for)


@pytest.mark.parametrize("endpoint", MATRIX.endpoints.values(), ids=MATRIX.endpoints.keys())
def test_every_principal_gets_what_the_rules_say(world, clients, endpoint):
    """All of an endpoint's actions in one test: its objects are made once, and every failure is listed."""
    targets = {"own": endpoint.build(world, world.own), "other": endpoint.build(world, world.other)}
    failures = [
        problem for action in endpoint.actions for problem in run(endpoint, action, clients=clients, targets=targets)
    ]
    assert not failures, "\n".join(failures)


# Routes the matrix leaves out, and why.
NOT_IN_MATRIX = {
    ("/ingate/api/v1/me/", "GET"): "who the caller is: any signed-in user or valid key, about itself only",
}


def _route(endpoint: Endpoint, action: Action) -> tuple[str, str]:
    return f"{API}{endpoint.name}/{'{}/' if action.detail else ''}{action.path}", action.method.upper()


def test_every_api_route_is_in_the_matrix():
    """A new endpoint or action needs its row above (PUT shares PATCH's permission check: PATCH stands for both)."""
    from drf_spectacular.generators import EndpointEnumerator

    declared = {_route(e, a) for e, a in MATRIX.cases()}
    missing = []
    for path, _, method, _ in EndpointEnumerator().get_api_endpoints():
        route = (re.sub(r"\{[^}]+\}", "{}", path), "PATCH" if method == "PUT" else method)
        if path.startswith(API) and route not in declared and (path, method) not in NOT_IN_MATRIX:
            missing.append(f"{method} {path}")
    assert not missing, "not in the permission matrix: " + ", ".join(missing)


# --- ?org= of another org (moved from tenancy/tests/test_grants.py; now every listed endpoint) -----------------

LISTS = [name for name, endpoint in MATRIX.endpoints.items() if any(a.name == "list" for a in endpoint.actions)]


@pytest.mark.parametrize("endpoint", LISTS)
def test_another_orgs_id_in_the_org_filter_gives_nothing(world, client_for, endpoint):
    response = client_for(user=world.own.users["owner"]).get(f"/ingate/api/v1/{endpoint}/?org={world.other.org.pk}")
    assert response.status_code in (200, 400), response.content
    if response.status_code == 200:
        found = response.json()["results"] if isinstance(response.json(), dict) else response.json()
        assert all(row.get("org", world.own.org.pk) != world.other.org.pk for row in found)
        assert all(row.get("id") != world.other.org.pk for row in found) if endpoint == "organizations" else True


# --- dashboard pages of issue 19 (request detail, session trace, end user, keys): signed-in people only, each
# in the orgs they belong to; reading is for every role, making keys for members and up (as the API), revoking
# another's key for admins and owners (tenancy.services). Another org's objects are not found. ------------------

PAGE_WHO = ("viewer", "member", "admin", "owner", "staff", "outsider", "other-owner")
READERS = {"viewer", "member", "admin", "owner", "staff"}


def _page_client(world, who):
    user = {"staff": world.staff, "outsider": world.outsider, "other-owner": world.other.users["owner"]}.get(who)
    client = Client()
    client.force_login(user or world.own.users[who])
    return client


@pytest.fixture
def page_world(world):
    record = RequestRecord.objects.create(
        org=world.own.org,
        provider="openai",
        endpoint="chat.completions",
        model="gpt-4o-mini",
        status=200,
        session_id="page-session",
        user_id="page-user",
    )
    RequestBody.objects.create(
        record=record,
        request=json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Secret question"}]}),
    )
    rollups.apply([record])  # as the record writer does: the end-user page reads the rollups
    return record


@pytest.mark.parametrize("who", PAGE_WHO)
def test_the_dashboards_detail_pages_are_shown_to_the_orgs_people_only(world, page_world, who):
    client = _page_client(world, who)
    record = page_world
    pages = {
        f"/ingate/logs/{record.pk}/": "Secret question",
        "/ingate/sessions/page-session/?org=own-org": "page-session",
        "/ingate/users/page-user/?org=own-org": "page-user",
        "/ingate/keys/?org=own-org": world.own.key.prefix,
    }
    for url, shown in pages.items():
        reply = client.get(url)
        if who in READERS:
            assert reply.status_code == 200 and shown in reply.content.decode(), (who, url, reply.status_code)
        else:
            assert reply.status_code == 404, (who, url, reply.status_code)
    replay = client.get(f"/ingate/evals/playground/?org=own-org&record={record.pk}")
    assert ("Secret question" in replay.content.decode()) == (who in READERS), who
    if who == "outsider":  # with no org picked, as much as with one that is not theirs
        for url in ("/ingate/sessions/page-session/", "/ingate/users/page-user/"):
            assert client.get(url).status_code == 404, url
    assert Client().get(f"/ingate/logs/{record.pk}/").status_code == 302  # signed out: to the sign-in page


@pytest.mark.parametrize("who", PAGE_WHO)
def test_making_and_revoking_keys_on_the_keys_page_follows_the_api_rules(world, who):
    client = _page_client(world, who)
    made = client.post("/ingate/keys/?org=own-org", {"app": world.own.app.pk, "name": f"by {who}", "scopes": ["proxy"]})
    expected = {"member": 201, "admin": 201, "owner": 201, "staff": 201, "viewer": 400}.get(who, 404)
    assert made.status_code == expected, (who, made.status_code)
    key = world.own.key  # made by the system: only admins, owners and staff may revoke it
    revoked = client.post(f"/ingate/keys/{key.pk}/revoke/")
    key.refresh_from_db()
    assert revoked.status_code == (302 if who in READERS else 404)
    assert (key.revoked_at is not None) == (who in {"admin", "owner", "staff"}), who


# --- pages that change things (issue 19: prompts in the UI, the review queue) --------------------------------
#
# The same rules as the API rows above, asked through the pages: what a role may do there it may do here, and
# nothing more. Each case is judged by its effect (a prompt made, a label moved, a score stored), not by the
# page's wording; another org's objects are never found (404), or the change does not happen.


@dataclass(frozen=True)
class PageCase:
    name: str
    method: str
    url: Callable[[Any], str]
    roles: frozenset[str]
    body: Callable[[Any], dict] | None = None
    done: Callable[[Any], bool] | None = None  # for a POST: did the change happen?


def _page_world(world):
    """In the own org: a prompt with v1 and v2 (staging at v2, production at v1), and a request with its
    bodies scored `helpful` = 5."""
    org = world.own.org
    prompt = prompts.prompt_create(actor=SYSTEM, org=org, namespace="support", name="greeter")
    first, second = (prompts.version_create(actor=SYSTEM, prompt=prompt, template=t) for t in ("v1", "v2"))
    prompts.label_set(actor=SYSTEM, prompt=prompt, name="staging", version=second)
    prompts.label_set(actor=SYSTEM, prompt=prompt, name="production", version=first)
    record = RequestRecord.objects.get(pk=_dataset(world, world.own).record)  # a record with its bodies
    observability.score_create(actor=SYSTEM, record=record, name="helpful", value=5)

    class W:
        pass

    w = W()
    w.org, w.prompt, w.record = org, prompt, record
    w.label = lambda name: (
        Label.objects.filter(prompt=prompt, name=name).values_list("version__number", flat=True).first()
    )
    w.prompts, w.namespaces = Prompt.objects, Namespace.objects
    w.scores, w.datasets = Score.objects, Dataset.objects
    return w


PAGE_CASES = (
    PageCase("prompt list", "get", lambda w: f"/ingate/prompts/?org={w.org.slug}", EVERYONE),
    PageCase(
        "new prompt",
        "post",
        lambda w: f"/ingate/prompts/new/?org={w.org.slug}",
        MEMBERS,
        body=lambda w: {"namespace": "pages", "name": "fresh"},
        done=lambda w: w.prompts.filter(name="fresh").exists(),
    ),
    PageCase(
        "new namespace",
        "post",
        lambda w: f"/ingate/prompts/namespaces/new/?org={w.org.slug}",
        MEMBERS,
        body=lambda w: {"path": "legal"},
        done=lambda w: w.namespaces.filter(path="legal").exists(),
    ),
    PageCase("version editor", "get", lambda w: f"/ingate/prompts/{w.prompt.pk}/versions/new/", MEMBERS),
    PageCase(
        "new version",
        "post",
        lambda w: f"/ingate/prompts/{w.prompt.pk}/versions/new/",
        MEMBERS,
        body=lambda w: {"role": "user", "content": "Hello {{name}}"},
        done=lambda w: w.prompt.versions.count() == 3,
    ),
    PageCase("version page", "get", lambda w: f"/ingate/prompts/{w.prompt.pk}/v2/", EVERYONE),
    PageCase(
        "set development",
        "post",
        lambda w: f"/ingate/prompts/{w.prompt.pk}/labels/",
        MEMBERS,
        body=lambda w: {"action": "set", "label": "development", "version": "1"},
        done=lambda w: w.label("development") == 1,
    ),
    PageCase(
        "promote to production",
        "post",
        lambda w: f"/ingate/prompts/{w.prompt.pk}/labels/",
        ADMINS,
        body=lambda w: {"action": "promote", "source": "staging", "label": "production"},
        done=lambda w: w.label("production") == 2,
    ),
    PageCase("review queue", "get", lambda w: f"/ingate/review/?org={w.org.slug}&name=tone", EVERYONE),
    PageCase(
        "score in the queue",
        "post",
        lambda w: "/ingate/review/score/",
        MEMBERS,
        body=lambda w: {"record": str(w.record.pk), "queue": f"org={w.org.slug}&name=tone", "score": "l:kind"},
        done=lambda w: w.scores.filter(name="tone").exists(),
    ),
    PageCase(
        "dataset from scores",
        "post",
        lambda w: f"/ingate/evals/datasets/from-scores/?org={w.org.slug}",
        MEMBERS,
        body=lambda w: {"dataset": "from scores", "score_name": "helpful", "score": ">=4"},
        done=lambda w: w.datasets.filter(name="from scores").exists(),
    ),
)

PAGE_USERS = ("viewer", "member", "admin", "owner", "staff", "outsider", "other owner")


def _page_user(world, who: str):
    return {"staff": world.staff, "outsider": world.outsider, "other owner": world.other.users["owner"]}.get(
        who
    ) or world.own.users[who]


@pytest.mark.parametrize("case", PAGE_CASES, ids=[c.name for c in PAGE_CASES])
def test_every_user_gets_what_the_rules_say_on_the_pages(world, case):
    w = _page_world(world)
    failures = []
    for who in PAGE_USERS:
        allowed = who == "staff" or who in case.roles
        client = Client()
        client.force_login(_page_user(world, who))
        with transaction.atomic():
            url = case.url(w)
            reply = client.get(url) if case.method == "get" else client.post(url, case.body(w))
            status, happened = reply.status_code, case.done(w) if case.done else None
            transaction.set_rollback(True)
        if case.method == "get":
            wanted = 200 if allowed else (403 if who in ROLES else 404)
            if status != wanted:
                failures.append(f"{who}: got {status}, expected {wanted}")
        elif happened != allowed or status >= 500:
            failures.append(f"{who}: {'did not happen' if allowed else 'happened'} ({status})")
        elif not allowed and who not in ROLES and status not in (302, 404):
            failures.append(f"{who} (not of the org): got {status}, expected 404 or a redirect with a message")
    assert not failures, "\n".join(failures)
