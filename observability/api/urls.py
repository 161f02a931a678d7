from rest_framework.routers import SimpleRouter

from . import scores, views

router = SimpleRouter()
router.register("records", views.RequestRecordViewSet, basename="record")
router.register("observability-settings", views.ObservabilitySettingsViewSet, basename="observability-settings")
router.register("price-overrides", views.PriceOverrideViewSet, basename="price-override")
router.register("scores", scores.ScoreViewSet, basename="score")
urlpatterns = router.urls
