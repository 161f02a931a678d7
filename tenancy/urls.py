from django.urls import path

from . import views

app_name = "tenancy"
urlpatterns = [
    path("", views.route_list, name="routes"),
    path("<int:pk>/delete/", views.route_delete, name="route_delete"),
]
