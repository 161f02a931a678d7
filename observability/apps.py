from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability"
    verbose_name = "Observability"

    def ready(self) -> None:
        from tenancy.models import Role, Scope
        from tenancy.permissions import VIEW, grant

        from .models import RequestRecord

        # Everyone in an org may read its request records; a gateway key needs the logs:read scope.
        grant(RequestRecord, roles={role: {VIEW} for role in Role.values}, scopes={Scope.LOGS_READ: {VIEW}})
