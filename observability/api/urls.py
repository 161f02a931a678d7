from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("records", views.RequestRecordViewSet, basename="record")
urlpatterns = router.urls
