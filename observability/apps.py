from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability"
    verbose_name = "Observability"

    def ready(self) -> None:
        from tenancy.models import Role, Scope
        from tenancy.permissions import ALL, VIEW, grant

        from . import signals  # noqa: F401  (drop the proxy's cached body policy on a change)
        from .models import ObservabilitySettings, PriceOverride, RequestRecord

        # Everyone in an org may read its request records; a gateway key needs the logs:read scope.
        grant(RequestRecord, roles={role: {VIEW} for role in Role.values}, scopes={Scope.LOGS_READ: {VIEW}})
        # Settings and prices shape what is kept and what things cost: admins and owners change them.
        for model in (ObservabilitySettings, PriceOverride):
            grant(model, roles={Role.VIEWER: {VIEW}, Role.MEMBER: {VIEW}, Role.ADMIN: ALL, Role.OWNER: ALL})
