from django.urls import include, path
from rest_framework.routers import DefaultRouter

from . import storage, views, webhooks

router = DefaultRouter()
router.register("organizations", views.OrganizationViewSet, basename="organization")
router.register("teams", views.TeamViewSet, basename="team")
router.register("team-memberships", views.TeamMembershipViewSet, basename="team-membership")
router.register("apps", views.AppViewSet, basename="app")
router.register("memberships", views.MembershipViewSet, basename="membership")
router.register("keys", views.APIKeyViewSet, basename="key")
router.register("provider-credentials", views.ProviderCredentialViewSet, basename="provider-credential")
router.register("routes", views.RouteViewSet, basename="route")
router.register("budgets", views.BudgetViewSet, basename="budget")
router.register("rate-limits", views.RateLimitViewSet, basename="rate-limit")
router.register("budget-events", views.BudgetEventViewSet, basename="budget-event")
router.register("cache-settings", views.CacheSettingsViewSet, basename="cache-settings")
router.register("cache-purge", views.CachePurgeViewSet, basename="cache-purge")
router.register("guardrail-policies", views.GuardrailPolicyViewSet, basename="guardrail-policies")
router.register("audit-log", views.AuditLogViewSet, basename="audit-log")
router.register("storage-exports", storage.StorageExportViewSet, basename="storage-export")
router.register("storage-export-runs", storage.StorageExportRunViewSet, basename="storage-export-run")
router.register("webhook-endpoints", webhooks.WebhookEndpointViewSet, basename="webhook-endpoint")
router.register("webhook-deliveries", webhooks.WebhookDeliveryViewSet, basename="webhook-delivery")

urlpatterns = [
    path("me/", views.me, name="me"),
    path("", include(router.urls)),
]
