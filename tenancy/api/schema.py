"""OpenAPI description of gateway-key authentication."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from ..keys import KEY_MARKER


class GatewayKeyScheme(OpenApiAuthenticationExtension):
    target_class = "tenancy.authentication.GatewayKeyAuthentication"
    name = "gatewayKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": f"{KEY_MARKER}…",
            "description": "A gateway key. Management endpoints need the `admin` scope.",
        }
