from django.urls import path

from . import guardrail_views, review_views, views

app_name = "observability"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("logs/", views.logs, name="logs"),
    path("logs/views/", views.saved_view_save, name="saved_view_save"),
    path("logs/views/<int:pk>/delete/", views.saved_view_delete, name="saved_view_delete"),
    path("logs/<uuid:pk>/", views.record_detail, name="record"),
    path("sessions/", views.sessions, name="sessions"),
    path("sessions/<path:session_id>/", views.session_detail, name="session"),
    path("users/<path:user_id>/", views.end_user, name="end_user"),
    path("live/", views.live, name="live"),
    path("review/", review_views.review_queue, name="review"),
    path("review/score/", review_views.review_score, name="review_score"),
    path("guardrails/", guardrail_views.guardrails, name="guardrails"),
]
