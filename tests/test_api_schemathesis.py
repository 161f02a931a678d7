"""A bounded schemathesis pass over the API's OpenAPI schema: every operation, DELETEs included, a few
generated requests each, sent as an org admin's gateway key and as a staff session; none may answer 5xx."""

import tempfile
from pathlib import Path

import hypothesis
import hypothesis.configuration
import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from schemathesis.checks import not_a_server_error

from evals import services as eval_services
from evals.models import EvalRun
from evals.transfer import clean_item
from observability import services as observability_services
from observability.models import RequestRecord
from prompts import services as prompt_services
from tenancy import cache as tenancy_cache
from tenancy import crypto
from tenancy import guardrails as tenancy_guardrails
from tenancy import limits as tenancy_limits
from tenancy import routes as tenancy_routes
from tenancy import services as tenancy_services
from tenancy.audit import Actor
from tenancy.models import (
    AuditLog,
    BudgetEvent,
    Membership,
    Scope,
    StorageExport,
    StorageExportRun,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from tenancy.tests.factories import make_credential, make_key
from tenancy.webhooks.signing import new_secret

# The exports stream from an async generator, made for ASGI; under this WSGI handler Django reads it on a loop.
pytestmark = pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous iterators:Warning")

# Few examples per operation, always the same ones: this runs in CI on two shared cores (~100 operations).
EXAMPLES = 5
SYSTEM = Actor.system("schemathesis")


def _api_schema():
    """The schema as drf-spectacular builds it in-process: nothing is fetched over the network. Loaded when the
    module is collected (pytest-django has set Django up by then) because schemathesis's lazy fixture loader
    does not run under pytest 9 (it writes `Function._nodeid`, which pytest 9 no longer has)."""
    loaded = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
    # Coverage would add dozens of boundary requests per operation; examples and a few fuzzed ones stay in budget.
    loaded.config.phases.update(phases=["examples", "fuzzing"])
    # No example database: the same few requests on every run, and nothing written under ./.hypothesis.
    loaded.config.generation.update(max_examples=EXAMPLES, deterministic=True, database="none")
    return loaded


schema = _api_schema()
# Hypothesis caches constants and Unicode tables under ./.hypothesis even with no example database, from the
# collection on (its pytest plugin scans the project's modules then): keep them out of the checkout.
hypothesis.configuration.set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "ingate-hypothesis")


@pytest.fixture
def wsgi_app():
    """Django's own WSGI handler, called in this thread on the test's connection. Like Django's test client,
    keep `close_old_connections` off the request signals: it would drop the connection inside the test's
    transaction around every request."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield get_wsgi_application()
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def principals(world):
    """Headers for an org admin's gateway key (every scope) and for a staff user's session (with CSRF)."""
    _, plaintext = make_key(app=world.own.app, name="fuzz admin", scopes=list(Scope.values))
    browser = Client()
    browser.force_login(world.staff)
    csrf = "a" * 32  # an unmasked secret is accepted as both the cookie and the header
    staff = {
        "headers": {"X-CSRFToken": csrf},
        "cookies": {"sessionid": browser.cookies["sessionid"].value, "csrftoken": csrf},
    }
    return {"admin key": {"headers": {"Authorization": f"Bearer {plaintext}"}}, "staff session": staff}


@pytest.fixture
def known_ids(world):
    """One object of each kind in the key's org, by the path's collection: generated ids almost never name a
    row, so each request is sent again with the path naming one of these (to reach the object's handlers)."""
    own = world.own
    org = own.org
    member = own.users["member"]
    dataset = eval_services.dataset_create(
        actor=SYSTEM, org=org, name="fuzz", items=[clean_item({"input": "2+2?", "expected": "4"})]
    )
    prompt = prompt_services.prompt_create(actor=SYSTEM, org=org, namespace="fuzz", name="greeting")
    prompt_services.version_create(actor=SYSTEM, prompt=prompt, template="Hello {{name}}", variables={"name": "you"})
    run = eval_services.run_create(
        actor=SYSTEM,
        org=org,
        dataset_version=dataset.latest,
        targets=[{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "{{input}}"}]}],
        evaluators=[{"kind": "exact_match"}],
        queue=False,
    )
    record = RequestRecord.objects.create(
        org=org,
        app=own.app,
        key=own.key,
        provider="openai",
        endpoint="chat.completions",
        model="gpt-4o-mini",
        status=200,
        session_id="s1",
    )
    budget = tenancy_limits.budget_create(actor=SYSTEM, org=org, amount_usd=10)
    event = BudgetEvent.objects.create(
        budget=budget, org=org, kind="threshold", threshold=50, period_start=record.created_at, spend=5, amount_usd=10
    )
    # A loopback URL the instance refuses to send to: nothing a request makes fire leaves the machine.
    hook = WebhookEndpoint.objects.create(
        org=org, url="http://127.0.0.1:9/", secret_encrypted=crypto.encrypt(new_secret())
    )
    sent = WebhookEvent.objects.create(id="evt_fuzz", org=org, type="webhook.test", payload={})
    return {
        "webhook-endpoints": hook.pk,
        "webhook-deliveries": WebhookDelivery.objects.create(endpoint=hook, event=sent, org=org).pk,
        "organizations": org.pk,
        "teams": own.team.pk,
        "team-memberships": tenancy_services.team_member_add(actor=SYSTEM, team=own.team, user=member).pk,
        "apps": own.app.pk,
        "memberships": Membership.objects.get(org=org, user=member).pk,
        "keys": own.key.pk,
        "provider-credentials": make_credential(org).pk,
        "routes": tenancy_routes.route_create(
            actor=SYSTEM, org=org, name="fuzz", targets=[{"provider": "openai", "model": "gpt-4o-mini"}]
        ).pk,
        "budgets": budget.pk,
        "rate-limits": tenancy_limits.rate_limit_create(actor=SYSTEM, org=org, requests_per_minute=60).pk,
        "budget-events": event.pk,
        "cache-settings": tenancy_cache.cache_settings_create(actor=SYSTEM, org=org, enabled=True).pk,
        "guardrail-policies": tenancy_guardrails.guardrail_policy_create(actor=SYSTEM, org=org, name="fuzz").pk,
        "audit-log": AuditLog.objects.filter(org=org).order_by("pk").values_list("pk", flat=True).first(),
        "observability-settings": observability_services.observability_settings_set(actor=SYSTEM, org=org).org_id,
        "price-overrides": observability_services.price_override_create(actor=SYSTEM, org=org, model="fuzz-model").pk,
        "records": str(record.pk),
        "scores": observability_services.score_create(actor=SYSTEM, record=record, name="fuzz", value=1).pk,
        "prompt-namespaces": prompt.namespace_id,
        "prompts": prompt.pk,
        "datasets": dataset.pk,
        "eval-runs": EvalRun.objects.get(pk=run.pk).pk,
        "storage-exports": StorageExport.objects.create(org=org, bucket="fuzz-bucket").pk,
        "storage-export-runs": StorageExportRun.objects.create(org=org, status="failed", error="fuzz").pk,
    }


@schema.parametrize()
@hypothesis.settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,  # nothing written under .hypothesis/
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_no_operation_answers_a_server_error(case, wsgi_app, principals, known_ids):
    attempts = [principals["admin key"]]
    if case.path_parameters:
        collection = case.path.split("/")[4]  # /ingate/api/v1/<collection>/{id}/…
        attempts = [principals["admin key"], "known", *principals.values()]
    for credentials in attempts:
        if credentials == "known":
            case.path_parameters = {name: known_ids[collection] for name in case.path_parameters}
            continue
        # Each request in a savepoint rolled back afterwards: a DELETE or a failed query does not change what
        # the next request finds.
        with transaction.atomic():
            reply = case.call(app=wsgi_app, **credentials)
            transaction.set_rollback(True)
        case.validate_response(reply, checks=[not_a_server_error], headers=credentials["headers"])
