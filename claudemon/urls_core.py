"""URLs of the relay deployment: /health, /ready, and everything else goes upstream."""

from django.urls import path, re_path

from apps.proxy import views

urlpatterns = [
    path("health", views.health, name="health"),
    path("ready", views.ready, name="ready"),
    re_path(r"", views.relay, name="relay"),
]
