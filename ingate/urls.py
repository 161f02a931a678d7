"""Root URLs. Provider paths never reach Django: the proxy ASGI app answers them first (see asgi.py)."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import views

urlpatterns = [
    # `/` (GET) is the dashboard; HEAD / is answered by the proxy itself (asgi.py), provider paths never get here.
    path("", RedirectView.as_view(pattern_name="observability:overview"), name="root"),
    path("favicon.ico", RedirectView.as_view(url=static("observability/favicon.svg")), name="favicon"),
    path("admin/", admin.site.urls),
    path("ingate/health", views.health, name="health"),
    path("ingate/api/v1/", include("observability.api.urls")),
    path("ingate/api/v1/", include("prompts.api.urls")),
    path("ingate/api/v1/", include("evals.api.urls")),
    path("ingate/api/v1/", include("tenancy.api.urls")),
    path("ingate/api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("ingate/api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("ingate/api/auth/", include("rest_framework.urls")),
    path("ingate/login/", auth_views.LoginView.as_view(template_name="ingate/login.html"), name="login"),
    path("ingate/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("ingate/prompts/", include("prompts.urls")),
    path("ingate/evals/", include("evals.urls")),
    path("ingate/routes/", include("tenancy.urls")),
    path("ingate/keys/", include("observability.key_urls")),
    path("ingate/webhooks/", include("tenancy.webhooks.urls")),
    path("ingate/", include("observability.limit_urls")),
    path("ingate/", include("observability.export.urls")),
    path("ingate/", include("observability.urls")),
]
