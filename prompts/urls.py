from django.urls import path

from . import views

app_name = "prompts"
urlpatterns = [
    path("", views.prompt_list, name="list"),
    path("new/", views.prompt_new, name="new"),
    path("namespaces/new/", views.namespace_new, name="namespace_new"),
    path("<int:pk>/versions/new/", views.version_new, name="version_new"),
    path("<int:pk>/v<int:number>/", views.version_detail, name="version"),
    path("<int:pk>/", views.prompt_detail, name="detail"),
    path("<int:pk>/labels/", views.move_label, name="move"),
    path("<int:pk>/render/", views.render_form, name="render"),
]
