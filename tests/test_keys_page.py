"""The keys page: everyone in the org sees its keys with last use and this month's spend; a key is made with
scopes no wider than its maker holds (the same service as the API), shown once, and revoked from the page."""

import datetime
import re
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from observability import rollups
from observability.models import RequestRecord
from tenancy import keys, services
from tenancy.audit import Actor
from tenancy.models import APIKey, AuditLog
from tenancy.permissions import Principal
from tenancy.tests.factories import make_key

PAGE = "/ingate/keys/"


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_page_lists_the_orgs_keys_with_last_use_and_this_months_spend(world):
    key = world.own.key
    APIKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now() - datetime.timedelta(hours=2))
    month = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for when, cost in (
        (timezone.now() - datetime.timedelta(minutes=5), "0.25"),
        (month - datetime.timedelta(days=2), "9"),
    ):
        rollups.apply(
            [
                RequestRecord.objects.create(
                    org=world.own.org,
                    app=world.own.app,
                    key=key,
                    provider="openai",
                    endpoint="chat.completions",
                    model="gpt-4o",
                    status=200,
                    cost_total=Decimal(cost),
                    usage_source="reported",
                    created_at=when,
                )
            ]
        )
    shown = signed_in(world.own.users["viewer"]).get(PAGE, {"org": "own-org"}).content.decode()
    row = shown[shown.index(f'data-key="{key.prefix}"') :].split("</tr>")[0]
    assert "2\xa0hours ago" in row
    assert ">$0.25</a>" in row and "1 req" in row  # last month's $9 is not this month's spend
    assert world.other.key.prefix not in shown
    assert "Your role may see keys, not make them" in shown  # a viewer does not get the form


def test_an_admin_makes_a_key_and_sees_it_once(world):
    admin = signed_in(world.own.users["admin"])
    reply = admin.post(f"{PAGE}?org=own-org", {"app": world.own.app.pk, "name": "ci", "scopes": ["proxy", "logs:read"]})
    assert reply.status_code == 201 and reply["Cache-Control"] == "no-store"
    plaintext = re.search(r'data-testid="new-key-value">([^<]+)<', reply.content.decode()).group(1)
    made = APIKey.objects.get(name="ci")
    assert keys.matches(plaintext, made.digest)  # the key shown is the one stored
    assert made.scopes == ["proxy", "logs:read"] and made.created_by == world.own.users["admin"]
    assert AuditLog.objects.filter(action="key_create", object_id=str(made.pk)).exists()
    again = admin.get(PAGE, {"org": "own-org"}).content.decode()
    assert plaintext not in again and made.prefix in again  # never shown again


def test_a_member_cannot_grant_scopes_beyond_their_own(world):
    member = signed_in(world.own.users["member"])
    shown = member.get(PAGE, {"org": "own-org"}).content.decode()
    assert 'value="admin"' not in shown  # not offered
    reply = member.post(f"{PAGE}?org=own-org", {"app": world.own.app.pk, "name": "sneaky", "scopes": ["admin"]})
    assert reply.status_code == 400
    assert "Select a valid choice. admin is not one of the available choices." in reply.content.decode()
    assert not APIKey.objects.filter(name="sneaky").exists()


def test_the_service_refuses_a_scope_the_maker_does_not_hold_even_when_the_form_offers_it(world, monkeypatch):
    # The page offers what grantable_scopes says; the service checks again at creation (a role changed meanwhile).
    from observability import key_views

    monkeypatch.setattr(key_views, "grantable_scopes", lambda principal, org: frozenset({"proxy", "admin"}))
    member = signed_in(world.own.users["member"])
    reply = member.post(f"{PAGE}?org=own-org", {"app": world.own.app.pk, "name": "sneaky", "scopes": ["admin"]})
    assert reply.status_code == 400
    assert "You cannot grant admin" in reply.content.decode()
    assert not APIKey.objects.filter(name="sneaky").exists()


def test_a_key_is_revoked_from_the_page_and_stops_being_revocable(world):
    key, _ = make_key(app=world.own.app, name="old")
    admin = signed_in(world.own.users["admin"])
    reply = admin.post(f"{PAGE}{key.pk}/revoke/")
    assert reply.status_code == 302 and reply["Location"] == f"{PAGE}?org=own-org"
    key.refresh_from_db()
    assert key.revoked_at is not None
    shown = admin.get(PAGE, {"org": "own-org"}).content.decode()
    row = shown[shown.index(f'data-key="{key.prefix}"') :].split("</tr>")[0]
    assert ">revoked<" in row and "Revoke" not in row


def test_a_member_does_not_revoke_an_admins_key(world):
    admin = Actor(principal=Principal.for_user(world.own.users["admin"]))
    admins_key, _ = services.api_key_create(actor=admin, app=world.own.app, name="admin's", scopes=["proxy"])
    member = signed_in(world.own.users["member"])
    assert f'data-testid="revoke-{admins_key.prefix}"' not in member.get(PAGE, {"org": "own-org"}).content.decode()
    member.post(f"{PAGE}{admins_key.pk}/revoke/")
    admins_key.refresh_from_db()
    assert admins_key.revoked_at is None


@pytest.mark.parametrize("role", ["viewer", "member", "admin", "owner"])
def test_another_orgs_key_cannot_be_revoked(world, role):
    reply = signed_in(world.own.users[role]).post(f"{PAGE}{world.other.key.pk}/revoke/")
    assert reply.status_code == 404
    world.other.key.refresh_from_db()
    assert world.other.key.revoked_at is None
