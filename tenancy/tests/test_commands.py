"""Management commands: create_gateway_key and the first-start bootstrap."""

import io

import pytest
from django.core.management import CommandError, call_command

from tenancy.authentication import key_lookup
from tenancy.models import App, Organization

pytestmark = pytest.mark.django_db


def test_create_gateway_key_creates_what_is_missing_and_prints_the_key_last():
    out = io.StringIO()
    call_command(
        "create_gateway_key",
        "--org",
        "acme",
        "--app",
        "chatbot",
        "--scopes",
        "proxy,logs:read",
        stdout=out,
        stderr=io.StringIO(),
    )
    plaintext = out.getvalue().strip().splitlines()[-1]
    key = key_lookup(plaintext)
    assert key.org.slug == "acme" and key.app.slug == "chatbot" and key.scopes == ["proxy", "logs:read"]
    call_command("create_gateway_key", "--org", "acme", "--app", "chatbot", stdout=io.StringIO(), stderr=io.StringIO())
    assert Organization.objects.filter(slug="acme").count() == 1 and App.objects.filter(slug="chatbot").count() == 1


def test_create_gateway_key_refuses_unknown_scopes_clearly():
    with pytest.raises(CommandError, match="Unknown scope"):
        call_command(
            "create_gateway_key",
            "--org",
            "acme",
            "--app",
            "a",
            "--scopes",
            "god",
            stdout=io.StringIO(),
            stderr=io.StringIO(),
        )


def test_bootstrap_creates_a_demo_tenant_once_and_never_prints_secrets_twice():
    first = io.StringIO()
    call_command("bootstrap", stdout=first)
    lines = first.getvalue().strip().splitlines()
    key = key_lookup(lines[-1])
    assert key.org.slug == "demo" and "proxy" in key.scopes
    assert any(line.startswith("Admin password: ") for line in lines)
    second = io.StringIO()
    call_command("bootstrap", stdout=second)
    assert "sk-ingate-" not in second.getvalue() and "password" not in second.getvalue()
