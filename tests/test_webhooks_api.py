"""The webhook API: endpoints managed per org (the secret shown once, field errors for bad URLs), rotation,
the test event, the delivery log and "send again", all scoped to the caller's orgs."""

from __future__ import annotations

import json

import pytest
from standardwebhooks import Webhook

from tenancy.models import WebhookDelivery, WebhookEndpoint
from tenancy.webhooks import outbox

from .webhook_receiver import start_receiver

BASE = "/ingate/api/v1/webhook-endpoints/"


@pytest.fixture
def receiver():
    r = start_receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def admin(transactional_db, world, client_for, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # the embedded mode, also where CI runs with Redis
    settings.INGATE_WEBHOOK_ALLOW_PRIVATE = True
    yield client_for(user=world.own.users["admin"])
    assert outbox.WORKER.idle.wait(10)


def create(client, world, receiver, **fields):
    body = {"org": world.own.org.pk, "url": receiver.url, "description": "ops", **fields}
    return client.post(BASE, body, format="json")


def test_creating_an_endpoint_shows_its_secret_once(admin, world, receiver):
    made = create(admin, world, receiver, events=["key.created"])
    assert made.status_code == 201, made.content
    secret = made.json()["secret"]
    assert secret.startswith("whsec_") and made.json()["secret_hint"] in (secret[:3] + "…" + secret[-4:])
    shown = admin.get(f"{BASE}{made.json()['id']}/")
    assert shown.status_code == 200 and "secret" not in shown.json() and secret not in shown.content.decode()
    assert secret not in WebhookEndpoint.objects.get().secret_encrypted


def test_a_private_url_without_the_setting_is_a_field_error(admin, world, receiver, settings):
    settings.INGATE_WEBHOOK_ALLOW_PRIVATE = False
    refused = create(admin, world, receiver)
    assert refused.status_code == 400 and "public addresses only" in refused.json()["url"][0]
    assert not WebhookEndpoint.objects.exists()


def test_a_url_that_is_not_http_is_a_field_error(admin, world, receiver):
    refused = admin.post(BASE, {"org": world.own.org.pk, "url": "ftp://example.com/x"}, format="json")
    assert refused.status_code == 400 and "http://" in refused.json()["url"][0]


def test_an_unknown_event_type_is_a_field_error(admin, world, receiver):
    refused = create(admin, world, receiver, events=["key.exploded"])
    assert refused.status_code == 400 and "events" in refused.json()


def test_the_test_event_is_queued_logged_and_can_be_sent_again(admin, world, receiver):
    made = create(admin, world, receiver).json()
    queued = admin.post(f"{BASE}{made['id']}/test-event/")
    assert queued.status_code == 202 and queued.json()["event_type"] == "webhook.test"
    (first,) = receiver.wait_for(1)
    Webhook(made["secret"]).verify(first.body, first.headers)
    assert outbox.WORKER.idle.wait(10)
    log = admin.get(f"{BASE}{made['id']}/deliveries/").json()["results"]
    assert [(d["status"], d["response_status"], d["attempts"]) for d in log] == [("delivered", 200, 1)]
    assert log[0]["payload"]["type"] == "webhook.test"
    again = admin.post(f"/ingate/api/v1/webhook-deliveries/{log[0]['id']}/redeliver/")
    assert again.status_code == 202 and again.json()["redelivery_of"] == log[0]["id"]
    _, second = receiver.wait_for(2)
    assert second.headers["webhook-id"] == first.headers["webhook-id"] and second.body == first.body


def test_rotating_returns_a_new_secret_and_both_verify_meanwhile(admin, world, receiver):
    made = create(admin, world, receiver).json()
    rotated = admin.post(f"{BASE}{made['id']}/rotate-secret/", {"overlap_hours": 2}, format="json")
    assert rotated.status_code == 200 and rotated.json()["secret"] != made["secret"]
    admin.post(f"{BASE}{made['id']}/test-event/")
    (got,) = receiver.wait_for(1)
    Webhook(made["secret"]).verify(got.body, got.headers)
    Webhook(rotated.json()["secret"]).verify(got.body, got.headers)
    refused = admin.post(f"{BASE}{made['id']}/rotate-secret/", {"overlap_hours": 500}, format="json")
    assert refused.status_code == 400 and "overlap_hours" in refused.json()


def test_reenabling_a_disabled_endpoint_clears_its_notice(admin, world, receiver):
    made = create(admin, world, receiver).json()
    WebhookEndpoint.objects.filter(pk=made["id"]).update(enabled=False, disabled_reason="Disabled automatically: …")
    shown = admin.get(f"{BASE}{made['id']}/").json()
    assert shown["disabled_reason"].startswith("Disabled automatically")
    refused = admin.post(f"{BASE}{made['id']}/test-event/")
    assert refused.status_code == 400 and "disabled" in json.dumps(refused.json())
    back = admin.patch(f"{BASE}{made['id']}/", {"enabled": True}, format="json").json()
    assert back["enabled"] and back["disabled_reason"] == ""


def test_other_orgs_and_lesser_roles_cannot_see_or_manage_endpoints(admin, world, receiver, client_for):
    made = create(admin, world, receiver).json()
    admin.post(f"{BASE}{made['id']}/test-event/")
    receiver.wait_for(1)
    outsider = client_for(user=world.other.users["admin"])
    assert outsider.get(f"{BASE}{made['id']}/").status_code == 404
    assert outsider.get(BASE).json()["results"] == []
    assert outsider.get("/ingate/api/v1/webhook-deliveries/").json()["results"] == []
    member = client_for(user=world.own.users["member"])
    assert member.get(BASE).status_code == 403 and "admins and owners" in member.get(BASE).json()["detail"]
    assert create(member, world, receiver).status_code == 403
    delivery = WebhookDelivery.objects.get()
    assert outsider.post(f"/ingate/api/v1/webhook-deliveries/{delivery.pk}/redeliver/").status_code == 404


def test_the_admin_shows_a_new_endpoints_secret_once_and_sends_test_events(transactional_db, world, receiver, settings):
    from django.test import Client

    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.INGATE_WEBHOOK_ALLOW_PRIVATE = True
    staff = Client()
    staff.force_login(world.staff)
    page = staff.post(
        "/admin/tenancy/webhookendpoint/add/",
        {"org": world.own.org.pk, "url": receiver.url, "description": "ops", "failed_statuses": "[]", "enabled": "on"},
    )
    assert page.status_code == 200 and b"will not be shown again" in page.content
    endpoint = WebhookEndpoint.objects.get()
    secret = page.content.decode().split('id="new-secret"')[1].split(">", 1)[1].split("<", 1)[0]
    assert (
        secret.startswith("whsec_")
        and secret not in staff.get(f"/admin/tenancy/webhookendpoint/{endpoint.pk}/change/").content.decode()
    )
    staff.post(
        "/admin/tenancy/webhookendpoint/",
        {"action": "send_test_event", "_selected_action": [endpoint.pk]},
    )
    (got,) = receiver.wait_for(1)
    Webhook(secret).verify(got.body, got.headers)
    refused = staff.post(
        "/admin/tenancy/webhookendpoint/add/",
        {"org": world.own.org.pk, "url": "ftp://example.com/", "failed_statuses": "[]"},
    )
    assert refused.status_code == 200 and b"http://" in refused.content and WebhookEndpoint.objects.count() == 1
    assert outbox.WORKER.idle.wait(10)
