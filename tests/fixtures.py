"""Shared fixtures: API clients for users and keys, and a small two-org world for isolation tests."""

import pytest
from rest_framework.test import APIClient

from tenancy.models import Role
from tenancy.tests.factories import (
    AppFactory,
    MembershipFactory,
    OrganizationFactory,
    TeamFactory,
    UserFactory,
    make_key,
)
from tenancy.webhooks import outbox


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2 at production strength costs ~0.3 s per user; tests create many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _webhook_thread_stopped():
    # A test that ran an embedded gateway started the webhook thread (the record writer nudges it); it must not
    # go on sweeping a database the next test may not be allowed to touch.
    yield
    outbox.WORKER.stop()


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def client_for():
    """An API client signed in as `user` (session auth), or sending `key` as a bearer token."""

    def make(user=None, key=None):
        client = APIClient()
        if user is not None:
            client.force_login(user)
        if key is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        return client

    return make


@pytest.fixture
def world(db):
    """Two organizations, each with a team, an app, a key and one user per role."""

    class World:
        pass

    w = World()
    for label in ("own", "other"):
        org = OrganizationFactory(slug=f"{label}-org", name=f"{label.title()} Org")
        team = TeamFactory(org=org, slug=f"{label}-team")
        app = AppFactory(org=org, team=team, slug=f"{label}-app")
        key, plaintext = make_key(app=app, name=f"{label} key")
        users = {
            role: MembershipFactory(org=org, role=role, user=UserFactory(username=f"{label}-{role}")).user
            for role in Role.values
        }
        setattr(
            w,
            label,
            type(
                "Tenant", (), {"org": org, "team": team, "app": app, "key": key, "plaintext": plaintext, "users": users}
            ),
        )
    w.staff = UserFactory(username="staff", is_staff=True, is_superuser=True)
    w.outsider = UserFactory(username="outsider")
    return w


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """Connections close at the end of each request: the live gateway's threads (Django views, websocket
    consumers) must not hold the test database open when pytest-django drops it."""
    from django.conf import settings

    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
