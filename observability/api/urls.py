from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("records", views.RequestRecordViewSet, basename="record")
router.register("observability-settings", views.ObservabilitySettingsViewSet, basename="observability-settings")
router.register("price-overrides", views.PriceOverrideViewSet, basename="price-override")
urlpatterns = router.urls
