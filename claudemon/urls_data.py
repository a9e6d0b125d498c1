"""URLs of the data deployment."""

from django.contrib import admin
from django.urls import include, path

from claudemon.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("", include("apps.dashboard.urls")),
]
