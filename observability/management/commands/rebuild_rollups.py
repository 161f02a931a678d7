"""`manage.py rebuild_rollups [--org SLUG]`: recompute the overview's rollups from raw records."""

from django.core.management.base import BaseCommand, CommandError

from observability import rollups
from tenancy.models import Organization


class Command(BaseCommand):
    help = "Recompute dashboard rollups and sessions from the raw request records (after an import or restore)."

    def add_arguments(self, parser):
        parser.add_argument("--org", help="Only this organization (slug); default: all.")

    def handle(self, *args, org=None, **options):
        orgs = Organization.objects.all()
        if org:
            orgs = orgs.filter(slug=org)
            if not orgs.exists():
                raise CommandError(f"No organization with slug {org!r}.")
        for each in orgs:
            written = rollups.rebuild(each.pk)
            self.stdout.write(f"{each.slug}: {written} rollup rows")
