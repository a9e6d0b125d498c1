"""The data deployment: dashboard, stats API, admin, transcript search, live feed."""

from __future__ import annotations

from claudemon.settings.base import *  # noqa: F403
from claudemon.settings.base import BASE_DIR, CLAUDEMON_VAR_DIR

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "ninja",
    "apps.proxy",
    "apps.indexing",
    "apps.dashboard",
]
ROOT_URLCONF = "claudemon.urls_data"
ASGI_APPLICATION = "claudemon.asgi.application"
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = CLAUDEMON_VAR_DIR / "staticfiles"
# Serve straight from the finders: no collectstatic step is needed to run.
WHITENOISE_USE_FINDERS = True
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
