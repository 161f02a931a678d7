from django.urls import path

from . import review, views

app_name = "observability"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("logs/", views.logs, name="logs"),
    path("logs/<uuid:pk>/", views.record_detail, name="record"),
    path("sessions/", views.sessions, name="sessions"),
    path("sessions/<path:session_id>/", views.session_detail, name="session"),
    path("live/", views.live, name="live"),
    path("review/", review.review_queue, name="review"),
    path("review/score/", review.review_score, name="review_score"),
]
