from django.urls import path

from . import guardrail_views, views

app_name = "observability"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("logs/", views.logs, name="logs"),
    path("logs/<uuid:pk>/", views.record_detail, name="record"),
    path("sessions/", views.sessions, name="sessions"),
    path("sessions/<path:session_id>/", views.session_detail, name="session"),
    path("live/", views.live, name="live"),
    path("guardrails/", guardrail_views.guardrails, name="guardrails"),
]
