"""The webhooks page: add an endpoint (secret shown once), send a test event, read the delivery log, send again,
rotate, and see the notice of an endpoint disabled after failing."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from standardwebhooks import Webhook

from tenancy.models import WebhookDelivery, WebhookEndpoint
from tenancy.webhooks import outbox

from .webhook_receiver import start_receiver

PAGE = "/ingate/webhooks/"


@pytest.fixture
def receiver():
    r = start_receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def admin(transactional_db, world, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # the embedded mode, also where CI runs with Redis
    settings.INGATE_WEBHOOK_ALLOW_PRIVATE = True
    client = Client()
    client.force_login(world.own.users["admin"])
    yield client
    assert outbox.WORKER.idle.wait(10)


def secret_in(page) -> str:
    return re.search(r'data-testid="new-secret"[^>]*>(whsec_[^<]+)<', page.content.decode()).group(1)


def test_an_admin_adds_an_endpoint_tests_it_and_sends_again_from_the_log(admin, world, receiver):
    org = world.own.org.slug
    page = admin.post(f"{PAGE}?org={org}", {"url": receiver.url, "description": "ops", "events": ["key.created"]})
    assert page.status_code == 200 and b"will not be shown again" in page.content
    secret = secret_in(page)
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["key.created"] and secret not in admin.get(f"{PAGE}?org={org}").content.decode()
    admin.post(f"{PAGE}{endpoint.pk}/test/")
    (got,) = receiver.wait_for(1)
    assert Webhook(secret).verify(got.body, got.headers)["type"] == "webhook.test"
    assert outbox.WORKER.idle.wait(10)
    log = admin.get(f"{PAGE}?org={org}&endpoint={endpoint.pk}").content.decode()
    assert 'data-status="delivered"' in log and "HTTP 200" in log and "webhook.test" in log
    delivery = WebhookDelivery.objects.get()
    admin.post(f"{PAGE}deliveries/{delivery.pk}/redeliver/")
    _, again = receiver.wait_for(2)
    assert again.headers["webhook-id"] == got.headers["webhook-id"]


def test_a_bad_url_is_shown_on_the_form(admin, world, settings):
    settings.INGATE_WEBHOOK_ALLOW_PRIVATE = False
    page = admin.post(f"{PAGE}?org={world.own.org.slug}", {"url": "http://127.0.0.1:8080/hook"})
    assert page.status_code == 400 and b'data-testid="url-error"' in page.content
    assert b"public addresses only" in page.content and not WebhookEndpoint.objects.exists()


def test_rotating_shows_the_new_secret_once(admin, world, receiver):
    admin.post(f"{PAGE}?org={world.own.org.slug}", {"url": receiver.url})
    endpoint = WebhookEndpoint.objects.get()
    page = admin.post(f"{PAGE}{endpoint.pk}/rotate/")
    assert page.status_code == 200 and secret_in(page).startswith("whsec_")
    endpoint.refresh_from_db()
    assert endpoint.previous_expires_at is not None


def test_a_disabled_endpoint_shows_its_notice_and_can_be_enabled_again(admin, world, receiver):
    admin.post(f"{PAGE}?org={world.own.org.slug}", {"url": receiver.url})
    endpoint = WebhookEndpoint.objects.get()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False, disabled_reason="Disabled automatically: x")
    page = admin.get(f"{PAGE}?org={world.own.org.slug}").content.decode()
    assert 'data-testid="disabled-notice"' in page and "Disabled automatically" in page
    admin.post(f"{PAGE}{endpoint.pk}/toggle/")
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.disabled_reason == ""


def test_other_orgs_and_members_cannot_reach_the_endpoints(admin, world, receiver):
    admin.post(f"{PAGE}?org={world.own.org.slug}", {"url": receiver.url})
    endpoint = WebhookEndpoint.objects.get()
    outsider = Client()
    outsider.force_login(world.other.users["admin"])
    assert outsider.get(f"{PAGE}?org={world.own.org.slug}").status_code == 404
    assert outsider.post(f"{PAGE}{endpoint.pk}/test/").status_code == 404
    member = Client()
    member.force_login(world.own.users["member"])
    assert endpoint.url.encode() not in member.get(PAGE).content
    assert member.post(f"{PAGE}{endpoint.pk}/delete/").status_code == 404
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
