"""URLs of the relay deployment: /health, and everything else goes upstream."""

from django.urls import path, re_path

from apps.proxy import views

urlpatterns = [
    path("health", views.health, name="health"),
    re_path(r"", views.relay, name="relay"),
]
