"""`manage.py create_gateway_key --org ORG --app APP [--scopes …]`: the key alone on stdout's last line."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from tenancy import services
from tenancy.audit import Actor
from tenancy.models import App, Organization, Scope


class Command(BaseCommand):
    help = "Create a gateway key for an app, creating the organization and app when missing."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="Organization slug (created if missing).")
        parser.add_argument("--app", required=True, help="App slug within the organization (created if missing).")
        parser.add_argument(
            "--scopes",
            nargs="+",
            default=[Scope.PROXY],
            help=f"Scopes, space- or comma-separated (default: proxy). Known: {', '.join(Scope.values)}.",
        )
        parser.add_argument("--name", default="", help="A name for the key (default: cli).")

    def handle(self, *args, org, app, scopes, name, **options):
        actor = Actor.system("cli")
        scopes = [s for item in scopes for s in item.split(",") if s]
        try:
            with transaction.atomic():
                organization = Organization.objects.filter(slug=org).first()
                if organization is None:
                    organization = services.organization_create(actor=actor, name=org, slug=org)
                    self.stderr.write(f"Created organization {org}")
                application = App.objects.filter(org=organization, slug=app).first()
                if application is None:
                    application = services.app_create(actor=actor, org=organization, name=app, slug=app)
                    self.stderr.write(f"Created app {org}/{app}")
                key, plaintext = services.api_key_create(
                    actor=actor, app=application, name=name or "cli", scopes=scopes
                )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        self.stderr.write(f"Created gateway key {key.display} for {org}/{app} with scopes {', '.join(key.scopes)}")
        self.stdout.write(plaintext)
