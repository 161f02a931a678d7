from django.urls import path

from . import views

app_name = "evals"
urlpatterns = [
    path("", views.index, name="index"),
    path("datasets/", views.dataset_create, name="dataset_create"),
    path("datasets/<int:pk>/", views.dataset_detail, name="dataset"),
    path("datasets/<int:pk>/change/", views.dataset_change, name="dataset_change"),
    path("datasets/from-records/", views.add_from_records, name="add_records"),
    path("datasets/from-scores/", views.dataset_from_scores, name="dataset_from_scores"),
    path("runs/new/", views.run_new, name="run_new"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run_cancel"),
    path("compare/", views.run_compare, name="compare"),
    path("playground/", views.playground, name="playground"),
    path("playground/stream/", views.playground_stream, name="playground_stream"),
    path("playground/save/", views.playground_save, name="playground_save"),
]
