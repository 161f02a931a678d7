"""The budgets and rate limits pages (observability/limit_views.py), under /ingate/."""

from django.urls import path

from . import limit_views

app_name = "limits"
urlpatterns = [
    path("budgets/", limit_views.budget_list, name="budgets"),
    path("budgets/<int:pk>/delete/", limit_views.budget_delete, name="budget_delete"),
    path("rate-limits/", limit_views.rate_limit_list, name="rate_limits"),
    path("rate-limits/<int:pk>/delete/", limit_views.rate_limit_delete, name="rate_limit_delete"),
]
