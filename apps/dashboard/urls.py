from django.contrib.auth import views as auth_views
from django.urls import path

from apps.dashboard import views

app_name = "dashboard"
urlpatterns = [
    path("health", views.health, name="health"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("live/", views.live, name="live"),
    path("requests/", views.requests_list, name="exchange-list"),
    path("requests/<int:exchange_id>/", views.exchange_detail, name="exchange-detail"),
    path("performance/", views.performance, name="performance"),
    # "home" kept as an alias so older links and reverses keep working.
    path("", views.overview, name="overview"),
    path("", views.overview, name="home"),
]
