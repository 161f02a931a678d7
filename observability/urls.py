from django.urls import path

from . import views

app_name = "observability"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("logs/", views.logs, name="logs"),
    path("logs/views/", views.saved_view_save, name="saved_view_save"),
    path("logs/views/<int:pk>/delete/", views.saved_view_delete, name="saved_view_delete"),
    path("logs/<uuid:pk>/", views.record_detail, name="record"),
    path("sessions/", views.sessions, name="sessions"),
    path("sessions/<path:session_id>/", views.session_detail, name="session"),
    path("live/", views.live, name="live"),
]
