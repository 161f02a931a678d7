from django.urls import path

from . import views

app_name = "prompts"
urlpatterns = [
    path("", views.prompt_list, name="list"),
    path("<int:pk>/", views.prompt_detail, name="detail"),
    path("<int:pk>/labels/", views.move_label, name="move"),
    path("<int:pk>/render/", views.render_form, name="render"),
]
