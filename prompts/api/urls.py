from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("prompt-namespaces", views.NamespaceViewSet, basename="prompt-namespace")
router.register("prompts", views.PromptViewSet, basename="prompt")
urlpatterns = router.urls
