from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability"
    verbose_name = "Observability"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from tenancy.models import Role, Scope
        from tenancy.permissions import ADD, ALL, VIEW, grant

        from . import signals  # noqa: F401  (drop the proxy's cached body policy on a change)
        from .models import ObservabilitySettings, PriceOverride, RequestRecord, Score
        from .search import restore_sqlite_triggers

        # Everyone in an org may read its request records; a gateway key needs the logs:read scope.
        grant(RequestRecord, roles={role: {VIEW} for role in Role.values}, scopes={Scope.LOGS_READ: {VIEW}})
        # Settings and prices shape what is kept and what things cost: admins and owners change them.
        for model in (ObservabilitySettings, PriceOverride):
            grant(model, roles={Role.VIEWER: {VIEW}, Role.MEMBER: {VIEW}, Role.ADMIN: ALL, Role.OWNER: ALL})
        # Scores are feedback on records: everyone who reads the records reads them; members and up add them (the
        # review queue, the API), and so does an application's key with `scores:write`.
        grant(
            Score,
            roles={Role.VIEWER: {VIEW}, Role.MEMBER: {VIEW, ADD}, Role.ADMIN: {VIEW, ADD}, Role.OWNER: {VIEW, ADD}},
            scopes={Scope.LOGS_READ: {VIEW}, Scope.SCORES_WRITE: {VIEW, ADD}},
        )
        post_migrate.connect(restore_sqlite_triggers, sender=self, dispatch_uid="observability-search-triggers")
