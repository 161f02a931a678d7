"""`manage.py bootstrap`: on a fresh instance, create a demo organization, app, gateway key and admin user."""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from tenancy import services
from tenancy.audit import Actor
from tenancy.models import Organization, Scope

# Everything but `admin`: an admin key exists only where someone asked for one (see the README).
DEMO_KEY_SCOPES = [s for s in Scope.values if s != Scope.ADMIN]


def bootstrap_instance() -> dict | None:
    """Create the demo tenant and first admin when the instance has no organization yet.

    Returns what was created, including the one-time key and password, or None when the instance
    was already set up (nothing is ever printed twice: only digests and password hashes are kept).
    """
    User = get_user_model()
    with transaction.atomic():
        if Organization.objects.exists():
            return None
        actor = Actor.system("bootstrap")
        password = None
        admin = User.objects.filter(is_superuser=True).order_by("pk").first()
        if admin is None:
            password = secrets.token_urlsafe(12)
            admin = services.user_create(actor=actor, username="admin", password=password, is_staff=True)
        org = services.organization_create(actor=actor, name="Demo", slug="demo", owner=admin)
        app = services.app_create(actor=actor, org=org, name="Demo app", slug="demo-app")
        key, plaintext = services.api_key_create(actor=actor, app=app, name="demo", scopes=DEMO_KEY_SCOPES)
    return {"org": org, "app": app, "key": key, "plaintext": plaintext, "admin": admin, "password": password}


class Command(BaseCommand):
    help = "Create a demo organization, app, gateway key and admin user on a fresh instance (idempotent)."

    def handle(self, *args, **options):
        created = bootstrap_instance()
        if created is None:
            self.stdout.write("Already set up: nothing created.")
            return
        self.stdout.write(f"Admin user: {created['admin'].get_username()}")
        if created["password"]:
            self.stdout.write(f"Admin password: {created['password']}")
        self.stdout.write(f"Gateway key ({created['org'].slug}/{created['app'].slug}): {created['plaintext']}")
        self.stdout.write(created["plaintext"])
