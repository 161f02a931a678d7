"""On the hot path a key's scopes follow its creator's current role: demotion narrows, removal or deactivation
disables, at once (the cached key is dropped), without a database read per request."""

import httpx

from tenancy import selectors, services
from tenancy.audit import Actor
from tenancy.keys import CREATOR_LEFT
from tenancy.models import Membership, Role
from tenancy.permissions import Principal
from tenancy.tests.factories import AppFactory, MembershipFactory, OrganizationFactory, UserFactory

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
SYSTEM = Actor.system("test")


def chat(gateway, plaintext):
    return httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {plaintext}"})


def _admins_key(scopes=("proxy", "admin")):
    org = OrganizationFactory(slug="acme", name="Acme")
    MembershipFactory(org=org, role=Role.OWNER, user=UserFactory(username="boss"))
    admin = UserFactory(username="alice")
    membership = MembershipFactory(org=org, role=Role.ADMIN, user=admin)
    app = AppFactory(org=org, slug="acme-app")
    key, plaintext = services.api_key_create(
        actor=Actor(principal=Principal.for_user(admin), via="test"), app=app, name="alice's", scopes=list(scopes)
    )
    return membership, key, plaintext


def test_a_demoted_admins_key_still_calls_providers_but_removal_stops_it_at_once(gateway, fake, monkeypatch):
    membership, _, plaintext = _admins_key()
    loads = []
    original = selectors.gateway_key_by_prefix
    monkeypatch.setattr(selectors, "gateway_key_by_prefix", lambda prefix: loads.append(prefix) or original(prefix))
    assert chat(gateway, plaintext).status_code == 200  # cached now
    assert chat(gateway, plaintext).status_code == 200
    assert len(loads) == 1  # the creator's role came with the key: no extra read per request

    services.membership_update(actor=SYSTEM, membership=membership, role=Role.MEMBER)
    assert chat(gateway, plaintext).status_code == 200  # members may hold `proxy`
    assert len(loads) == 2  # the demotion dropped the cached key

    services.membership_delete(actor=SYSTEM, membership=Membership.objects.get(pk=membership.pk))
    refused = chat(gateway, plaintext)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["message"] == CREATOR_LEFT
    assert len(fake.requests) == 3


def test_deactivating_the_creator_stops_their_keys_at_once(gateway, fake):
    membership, _, plaintext = _admins_key(scopes=("proxy",))
    assert chat(gateway, plaintext).status_code == 200
    user = membership.user
    user.is_active = False
    user.save()
    refused = chat(gateway, plaintext)
    assert refused.status_code == 401 and refused.json()["error"]["message"] == CREATOR_LEFT
    assert len(fake.requests) == 1


def test_a_sign_in_of_the_creator_keeps_their_cached_keys(gateway, fake, monkeypatch):
    membership, _, plaintext = _admins_key(scopes=("proxy",))
    loads = []
    original = selectors.gateway_key_by_prefix
    monkeypatch.setattr(selectors, "gateway_key_by_prefix", lambda prefix: loads.append(prefix) or original(prefix))
    assert chat(gateway, plaintext).status_code == 200
    from django.contrib.auth.models import update_last_login

    update_last_login(None, membership.user)
    assert chat(gateway, plaintext).status_code == 200
    assert len(loads) == 1
