"""The storage page (observability/export/views.py), under /ingate/."""

from django.urls import path

from . import views

app_name = "storage"
urlpatterns = [
    path("storage/", views.storage, name="page"),
    path("storage/<int:pk>/run/", views.storage_run, name="run"),
]
