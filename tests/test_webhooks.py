"""Webhook delivery against a real receiver on loopback: signatures the standardwebhooks library verifies,
retries with backoff on errors and timeouts, endpoints disabled after persistent failure, "send again" from the
log, secret rotation, and the SSRF refusals."""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone
from standardwebhooks import Webhook, WebhookVerificationError

from tenancy.audit import Actor
from tenancy.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from tenancy.tests.factories import OrganizationFactory
from tenancy.webhooks import outbox
from tenancy.webhooks.services import (
    webhook_endpoint_create,
    webhook_endpoint_rotate_secret,
    webhook_redeliver,
    webhook_send_test,
)

from .webhook_receiver import Answer, start_receiver

SYSTEM = Actor.system("test")


@pytest.fixture
def receiver():
    r = start_receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def org(transactional_db, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # the embedded mode, also where CI runs with Redis (see the worker test)
    settings.INGATE_WEBHOOK_ALLOW_PRIVATE = True  # the receiver is on loopback
    settings.INGATE_WEBHOOK_TIMEOUT = 1.0
    settings.INGATE_WEBHOOK_RETRY_SCHEDULE = [60.0, 120.0]
    yield OrganizationFactory(slug="acme")
    assert outbox.WORKER.idle.wait(10), "the webhook thread is still sending"


def endpoint_for(org, receiver, **fields):
    return webhook_endpoint_create(actor=SYSTEM, org=org, url=receiver.url, **fields)


def wait_status(delivery_id: int, *statuses: str, timeout: float = 10.0) -> WebhookDelivery:
    deadline = time.monotonic() + timeout
    while True:
        delivery = WebhookDelivery.objects.get(pk=delivery_id)
        if delivery.status in statuses:
            return delivery
        if time.monotonic() > deadline:
            raise AssertionError(f"delivery {delivery_id} is {delivery.status}, expected {statuses}")
        time.sleep(0.02)


def only_delivery() -> WebhookDelivery:
    (delivery,) = WebhookDelivery.objects.all()
    return delivery


def test_an_event_arrives_signed_so_the_standardwebhooks_verifier_accepts_it(org, receiver):
    endpoint, secret = endpoint_for(org, receiver)
    assert secret.startswith("whsec_") and secret not in endpoint.secret_encrypted
    event = outbox.emit(org_id=org.pk, event_type="key.created", data={"key": {"prefix": "ig_abc"}})
    (got,) = receiver.wait_for(1)
    payload = Webhook(secret).verify(got.body, got.headers)
    assert payload["id"] == event.id == got.headers["webhook-id"]
    assert payload["type"] == "key.created" and payload["org"] == {"id": org.pk, "slug": "acme"}
    assert payload["data"] == {"key": {"prefix": "ig_abc"}}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(got.body.replace(b"ig_abc", b"ig_xyz"), got.headers)
    delivery = wait_status(only_delivery().pk, DeliveryStatus.DELIVERED)
    assert delivery.attempts == 1 and delivery.response_status == 200 and delivery.response_excerpt == "answered 200"
    assert delivery.duration_ms is not None


def test_an_endpoint_gets_only_the_events_it_lists(org, receiver):
    endpoint_for(org, receiver, events=["key.revoked"])
    assert outbox.emit(org_id=org.pk, event_type="key.created", data={}) is None
    outbox.emit(org_id=org.pk, event_type="key.revoked", data={})
    (got,) = receiver.wait_for(1)
    assert json.loads(got.body)["type"] == "key.revoked"


def test_a_server_error_is_retried_on_the_backoff_schedule_until_delivered(org, receiver):
    receiver.answers = [Answer(500), Answer(503)]
    endpoint_for(org, receiver)
    outbox.emit(org_id=org.pk, event_type="key.created", data={})
    first = wait_status(only_delivery().pk, DeliveryStatus.PENDING)
    while first.attempts == 0:
        first = wait_status(first.pk, DeliveryStatus.PENDING)
    assert first.response_status == 500 and "HTTP 500" in first.error
    assert first.next_attempt_at - first.last_attempt_at == datetime.timedelta(seconds=60)
    assert outbox.deliver_due(now=first.last_attempt_at + datetime.timedelta(seconds=30)) == 0  # not yet due
    second_try = first.last_attempt_at + datetime.timedelta(seconds=61)
    assert outbox.deliver_due(now=second_try) == 1
    second = WebhookDelivery.objects.get(pk=first.pk)
    assert second.attempts == 2 and second.response_status == 503
    assert second.next_attempt_at - second_try == datetime.timedelta(seconds=120)  # backing off
    outbox.deliver_due(now=second_try + datetime.timedelta(seconds=121))
    third = WebhookDelivery.objects.get(pk=first.pk)
    assert third.status == DeliveryStatus.DELIVERED and third.attempts == 3
    ids = {r.headers["webhook-id"] for r in receiver.wait_for(3)}
    assert len(ids) == 1  # every attempt is the same message: receivers deduplicate on webhook-id


def test_a_receiver_that_does_not_answer_in_time_is_retried_later(org, receiver, settings):
    settings.INGATE_WEBHOOK_TIMEOUT = 0.3
    receiver.answers = [Answer(200, delay=1.0)]
    endpoint_for(org, receiver)
    outbox.emit(org_id=org.pk, event_type="key.created", data={})
    delivery = only_delivery()
    while delivery.attempts == 0:
        delivery = wait_status(delivery.pk, DeliveryStatus.PENDING)
    assert "Timed out" in delivery.error and delivery.response_status is None
    assert delivery.next_attempt_at == delivery.last_attempt_at + datetime.timedelta(seconds=60)


def test_an_endpoint_failing_past_its_last_retry_is_disabled_and_the_org_told(org, receiver, settings):
    settings.INGATE_WEBHOOK_RETRY_SCHEDULE = [60.0]
    settings.INGATE_WEBHOOK_DISABLE_AFTER = 3600.0
    receiver.answers = [Answer(500)] * 5
    failing, _ = endpoint_for(org, receiver, description="failing")
    watcher_receiver = start_receiver()
    try:
        _, watcher_secret = endpoint_for(org, watcher_receiver, events=["webhook.disabled"])
        outbox.emit(org_id=org.pk, event_type="key.created", data={})
        delivery = WebhookDelivery.objects.get(endpoint=failing)
        while delivery.attempts == 0:
            delivery = wait_status(delivery.pk, DeliveryStatus.PENDING)
        # The last retry fails, but the endpoint has not been failing for long enough: it stays on.
        outbox.deliver_due(now=delivery.last_attempt_at + datetime.timedelta(seconds=61))
        assert WebhookDelivery.objects.get(pk=delivery.pk).status == DeliveryStatus.FAILED
        failing.refresh_from_db()
        assert failing.enabled and failing.failing_since is not None
        # Later events keep failing past INGATE_WEBHOOK_DISABLE_AFTER: the endpoint is disabled.
        outbox.emit(org_id=org.pk, event_type="key.created", data={})
        later = WebhookDelivery.objects.filter(endpoint=failing).order_by("-pk").first()
        while later.attempts == 0:
            later = wait_status(later.pk, DeliveryStatus.PENDING)
        outbox.deliver_due(now=failing.failing_since + datetime.timedelta(hours=2))
        failing.refresh_from_db()
        assert not failing.enabled and "Disabled automatically" in failing.disabled_reason
        (notice,) = watcher_receiver.wait_for(1)
        payload = Webhook(watcher_secret).verify(notice.body, notice.headers)
        assert payload["type"] == "webhook.disabled" and payload["data"]["endpoint"]["id"] == failing.pk
        assert outbox.emit(org_id=org.pk, event_type="key.revoked", data={}) is None  # nobody else wants it now
    finally:
        watcher_receiver.server.shutdown()


def test_send_again_replays_the_same_event_from_the_log(org, receiver):
    endpoint, secret = endpoint_for(org, receiver)
    outbox.emit(org_id=org.pk, event_type="key.created", data={"n": 1})
    first = wait_status(only_delivery().pk, DeliveryStatus.DELIVERED)
    again = webhook_redeliver(actor=SYSTEM, delivery=first)
    one, two = receiver.wait_for(2)
    assert one.body == two.body and one.headers["webhook-id"] == two.headers["webhook-id"]
    Webhook(secret).verify(two.body, two.headers)
    assert wait_status(again.pk, DeliveryStatus.DELIVERED).redelivery_of_id == first.pk


def test_the_test_event_goes_to_the_one_endpoint_whatever_it_lists(org, receiver):
    endpoint, secret = endpoint_for(org, receiver, events=["budget.exceeded"])
    webhook_send_test(actor=SYSTEM, endpoint=endpoint)
    (got,) = receiver.wait_for(1)
    assert Webhook(secret).verify(got.body, got.headers)["type"] == "webhook.test"


def test_after_a_rotation_both_secrets_verify_until_the_overlap_ends(org, receiver):
    endpoint, old = endpoint_for(org, receiver)
    new = webhook_endpoint_rotate_secret(actor=SYSTEM, endpoint=endpoint, overlap=datetime.timedelta(hours=1))
    assert new != old and new.startswith("whsec_")
    outbox.emit(org_id=org.pk, event_type="key.created", data={})
    (got,) = receiver.wait_for(1)
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(got.body, got.headers)
    Webhook(new).verify(got.body, got.headers)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        previous_expires_at=timezone.now() - datetime.timedelta(seconds=1)
    )
    outbox.emit(org_id=org.pk, event_type="key.revoked", data={})
    _, later = receiver.wait_for(2)
    Webhook(new).verify(later.body, later.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(later.body, later.headers)


def test_a_redirect_is_not_followed(org, receiver):
    receiver.answers = [Answer(307, location=receiver.url + "/elsewhere")]
    endpoint_for(org, receiver)
    outbox.emit(org_id=org.pk, event_type="key.created", data={})
    delivery = only_delivery()
    while delivery.attempts == 0:
        delivery = wait_status(delivery.pk, DeliveryStatus.PENDING)
    assert delivery.response_status == 307 and "not followed" in delivery.error
    time.sleep(0.2)
    assert [r.path for r in receiver.received] == ["/hooks"]


def test_old_events_and_their_log_are_forgotten_unless_still_being_sent(org, receiver, settings):
    settings.INGATE_WEBHOOK_LOG_DAYS = 30
    receiver.answers = [Answer(500)]
    endpoint_for(org, receiver)
    failing = outbox.emit(org_id=org.pk, event_type="key.created", data={})
    delivery = WebhookDelivery.objects.get(event=failing)
    while delivery.attempts == 0:
        delivery = wait_status(delivery.pk, DeliveryStatus.PENDING)
    done = outbox.emit(org_id=org.pk, event_type="key.revoked", data={})
    wait_status(WebhookDelivery.objects.get(event=done).pk, DeliveryStatus.DELIVERED)
    assert outbox.prune(now=timezone.now() + datetime.timedelta(days=29)) == 0
    assert outbox.prune(now=timezone.now() + datetime.timedelta(days=31)) == 1  # the delivered one
    assert list(WebhookDelivery.objects.values_list("event_id", flat=True)) == [failing.id]  # still retrying


# --- SSRF -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://224.0.0.1/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_it_refuses_private_loopback_link_local_and_multicast_endpoints(db, settings, url):
    settings.INGATE_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(ValidationError) as refused:
        webhook_endpoint_create(actor=SYSTEM, org=OrganizationFactory(), url=url)
    assert "public addresses only" in refused.value.message_dict["url"][0]


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "file:///etc/passwd", "gopher://x/", "not a url"])
def test_it_refuses_urls_that_are_not_http(db, url):
    with pytest.raises(ValidationError) as refused:
        webhook_endpoint_create(actor=SYSTEM, org=OrganizationFactory(), url=url)
    assert "url" in refused.value.message_dict


def test_an_endpoint_that_became_private_is_refused_at_send_time(org, receiver, settings):
    endpoint_for(org, receiver)  # saved while private addresses were allowed
    settings.INGATE_WEBHOOK_ALLOW_PRIVATE = False
    outbox.emit(org_id=org.pk, event_type="key.created", data={})
    delivery = only_delivery()
    while delivery.attempts == 0:
        delivery = wait_status(delivery.pk, DeliveryStatus.PENDING)
    assert delivery.error.startswith("Refused:") and "public addresses only" in delivery.error
    time.sleep(0.2)
    assert receiver.received == []


@pytest.mark.skipif(
    not django_settings.REDIS_URL or connection.vendor != "postgresql",
    reason="a worker process needs Redis and a database it can share (PostgreSQL): set in CI",
)
def test_with_redis_a_celery_worker_delivers_and_the_due_task_retries(transactional_db, receiver, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.INGATE_WEBHOOK_ALLOW_PRIVATE = True
    receiver.answers = [Answer(500)]
    org = OrganizationFactory(slug="acme")
    _, secret = endpoint_for(org, receiver)
    db = connection.settings_dict  # the worker must write to the test database
    url = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "DATABASE_URL": url, "INGATE_WEBHOOK_ALLOW_PRIVATE": "true"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "ingate", "worker", "--pool=solo", "-n", f"hooks-{os.getpid()}@%h"]
        + ["--without-mingle", "--without-gossip", "-l", "warning"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        outbox.emit(org_id=org.pk, event_type="key.created", data={})  # queued on Redis, taken by the worker
        (first,) = receiver.wait_for(1, timeout=40)
        delivery = only_delivery()
        while delivery.attempts == 0:
            delivery = wait_status(delivery.pk, DeliveryStatus.PENDING, timeout=20)
        from tenancy.tasks import webhooks_deliver_due

        webhooks_deliver_due.delay()  # as beat would; the retry is not due yet: nothing is sent
        time.sleep(1.0)
        assert len(receiver.received) == 1
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        webhooks_deliver_due.delay()
        _, second = receiver.wait_for(2, timeout=40)
        assert Webhook(secret).verify(second.body, second.headers)["type"] == "key.created"
        assert wait_status(delivery.pk, DeliveryStatus.DELIVERED, timeout=20).attempts == 2
    finally:
        worker.terminate()
        worker.wait(timeout=20)


@pytest.fixture
def dns(monkeypatch):
    """Names this test decides the addresses of (a resolver that changes its answer: DNS rebinding); every other
    name resolves as usual."""
    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            address = answers[host].pop(0) if len(answers[host]) > 1 else answers[host][0]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def test_a_name_that_rebinds_to_a_private_address_after_saving_is_refused_at_send_time(org, receiver, settings, dns):
    settings.INGATE_WEBHOOK_ALLOW_PRIVATE = False
    port = receiver.server.server_address[1]
    dns["hooks.rebind.test"] = ["93.184.215.14", "127.0.0.1"]  # public when saved, loopback when sent
    webhook_endpoint_create(actor=SYSTEM, org=org, url=f"http://hooks.rebind.test:{port}/hooks")
    outbox.emit(org_id=org.pk, event_type="key.created", data={})
    delivery = only_delivery()
    while delivery.attempts == 0:
        delivery = wait_status(delivery.pk, DeliveryStatus.PENDING)
    assert "resolves to 127.0.0.1" in delivery.error
    time.sleep(0.2)
    assert receiver.received == []


def test_the_attempt_connects_to_the_address_it_checked_and_names_the_host(org, receiver, dns):
    port = receiver.server.server_address[1]
    dns["hooks.pinned.test"] = ["127.0.0.1"]  # only this resolver knows the name: the client must not ask again
    _, secret = webhook_endpoint_create(actor=SYSTEM, org=org, url=f"http://hooks.pinned.test:{port}/hooks")
    outbox.emit(org_id=org.pk, event_type="key.created", data={})
    (got,) = receiver.wait_for(1)
    assert got.headers["host"] == f"hooks.pinned.test:{port}" and got.path == "/hooks"
    Webhook(secret).verify(got.body, got.headers)


def test_an_attempt_that_cannot_even_be_signed_counts_as_failed_and_is_retried(org, receiver):
    endpoint, _ = endpoint_for(org, receiver)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret_encrypted="not a token of any configured key")
    outbox.emit(org_id=org.pk, event_type="key.created", data={})
    delivery = only_delivery()
    while delivery.attempts == 0:
        delivery = wait_status(delivery.pk, DeliveryStatus.PENDING)
    assert delivery.error.startswith("Could not send") and "INGATE_ENCRYPTION_KEY" in delivery.error
    assert delivery.next_attempt_at == delivery.last_attempt_at + datetime.timedelta(seconds=60)
    assert receiver.received == []
