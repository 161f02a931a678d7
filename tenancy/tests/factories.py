"""factory_boy factories for tenancy objects (keys and credentials go through services, as in real use)."""

import factory
from django.contrib.auth import get_user_model

from tenancy import crypto, services
from tenancy.audit import Actor
from tenancy.models import App, Membership, Organization, Role, Team


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery staple")


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    org = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Team {n}")
    slug = factory.Sequence(lambda n: f"team-{n}")


class AppFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = App

    org = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"App {n}")
    slug = factory.Sequence(lambda n: f"app-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    org = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.MEMBER


def make_key(app=None, scopes=("proxy",), name="test key", **kwargs):
    """A gateway key created the way users create them; returns (APIKey, plaintext)."""
    app = app or AppFactory()
    return services.api_key_create(actor=Actor.system("test"), app=app, name=name, scopes=list(scopes), **kwargs)


def make_credential(org, provider="openai", secret="sk-upstream-secret-123456", **kwargs):
    return services.provider_credential_create(
        actor=Actor.system("test"), org=org, provider=provider, secret=secret, **kwargs
    )


def stored_secret(credential) -> str:
    """A credential's secret as stored, decrypted (the proxy reads it through tenancy.selectors)."""
    return crypto.decrypt(credential.secret_encrypted) if credential.secret_encrypted else ""
