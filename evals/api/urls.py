from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("datasets", views.DatasetViewSet, basename="dataset")
router.register("eval-runs", views.RunViewSet, basename="eval-run")
urlpatterns = [
    path("eval-comparisons/", views.ComparisonView.as_view(), name="eval-comparison"),
    path("evaluators/", views.EvaluatorCatalogueView.as_view(), name="evaluator-catalogue"),
    *router.urls,
]
