from django.urls import path

from . import views

app_name = "observability"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("logs/", views.logs, name="logs"),
    path("logs/<uuid:pk>/", views.record_detail, name="record"),
    path("sessions/", views.sessions, name="sessions"),
    path("sessions/<path:session_id>/", views.session_detail, name="session"),
    path("users/<path:user_id>/", views.end_user, name="end_user"),
    path("live/", views.live, name="live"),
]
