from django.contrib.auth import views as auth_views
from django.urls import path

from apps.dashboard.auth import LoginForm
from apps.dashboard.views import health, profile, requests, sessions, usage

app_name = "dashboard"
urlpatterns = [
    path("health", health.health, name="health"),
    path("ready", health.ready, name="ready"),
    path(
        "login/",
        auth_views.LoginView.as_view(authentication_form=LoginForm),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("live/", requests.live, name="live"),
    path("requests/", requests.requests_list, name="exchange-list"),
    path(
        "requests/<int:exchange_id>/",
        requests.exchange_detail,
        name="exchange-detail",
    ),
    path("performance/", usage.performance, name="performance"),
    path("usage/", usage.usage, name="usage"),
    path("sessions/", sessions.sessions, name="sessions"),
    path("sessions/<str:session_id>/", sessions.session, name="session"),
    path("sessions/<str:session_id>/thread/", sessions.thread, name="thread"),
    path("projects/", sessions.projects, name="projects"),
    path("search/", sessions.search, name="search"),
    path("todos/", sessions.todos, name="todos"),
    path("profile/", profile.profile, name="profile"),
    # "home" kept as an alias so older links and reverses keep working.
    path("", usage.overview, name="overview"),
    path("", usage.overview, name="home"),
]
