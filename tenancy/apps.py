from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "tenancy"
    verbose_name = "Tenancy"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (login audit, key revocation on user delete, proxy cache drops)
        from .api import schema  # noqa: F401  (OpenAPI extension registers itself)
