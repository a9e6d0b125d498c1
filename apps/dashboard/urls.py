from django.contrib.auth import views as auth_views
from django.urls import path

from apps.dashboard import views, views_transcripts
from apps.dashboard.auth import LoginForm

app_name = "dashboard"
urlpatterns = [
    path("health", views.health, name="health"),
    path("ready", views.ready, name="ready"),
    path(
        "login/",
        auth_views.LoginView.as_view(authentication_form=LoginForm),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("live/", views.live, name="live"),
    path("requests/", views.requests_list, name="exchange-list"),
    path("requests/<int:exchange_id>/", views.exchange_detail, name="exchange-detail"),
    path("performance/", views.performance, name="performance"),
    path("usage/", views.usage, name="usage"),
    path("sessions/", views_transcripts.sessions, name="sessions"),
    path("sessions/<str:session_id>/", views_transcripts.session, name="session"),
    path("sessions/<str:session_id>/thread/", views_transcripts.thread, name="thread"),
    path("projects/", views_transcripts.projects, name="projects"),
    path("search/", views_transcripts.search, name="search"),
    path("todos/", views_transcripts.todos, name="todos"),
    # "home" kept as an alias so older links and reverses keep working.
    path("", views.overview, name="overview"),
    path("", views.overview, name="home"),
]
