"""The data deployment: dashboard, stats API, admin, transcript search, live feed."""

from __future__ import annotations

from claudemon.settings.base import *  # noqa: F403
from claudemon.settings.base import (
    BASE_DIR,
    CLAUDEMON_ALLOWED_HOSTS,
    CLAUDEMON_DATA_PORT,
    CLAUDEMON_VAR_DIR,
)
from claudemon.settings.env import env_int, env_list, env_path_prefix

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
    "apps.dashboard.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs a logged-in user unless marked @login_not_required
    # (login, /health); API operations answer 401 themselves (claudemon.api).
    "apps.dashboard.auth.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# Behind the front door (deploy/Caddyfile) the data side lives under a path prefix
# ("/claudemon"): every path outside it belongs to the relays and Anthropic's API.
# FORCE_SCRIPT_NAME puts it on every URL Django makes (links, redirects, static,
# the API) and strips it from requests that carry it; requests without it, straight
# to CLAUDEMON_DATA_PORT, are served as well. Unset: no prefix, as before.
CLAUDEMON_DATA_PREFIX = env_path_prefix("CLAUDEMON_DATA_PREFIX", "")
FORCE_SCRIPT_NAME = CLAUDEMON_DATA_PREFIX or None
STATIC_URL = f"{CLAUDEMON_DATA_PREFIX}/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = CLAUDEMON_VAR_DIR / "staticfiles"
# WhiteNoise warns at every start when STATIC_ROOT is missing, even though it serves
# from the finders; an empty folder keeps the logs clean until collectstatic runs.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Serve straight from the finders: no collectstatic step is needed to run.
WHITENOISE_USE_FINDERS = True
# Passwords: Django's validators wherever one is set (admin, changepassword,
# createsuperuser), and a lockout after repeated failed logins, per username and
# per client address (apps.dashboard.auth.ThrottledModelBackend; the failures
# are rows in the database, so every process sees them).
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation."
        "UserAttributeSimilarityValidator"
    },
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = ["apps.dashboard.auth.ThrottledModelBackend"]
CLAUDEMON_LOGIN_FAILURES = env_int("CLAUDEMON_LOGIN_FAILURES", 5, minimum=1)
CLAUDEMON_LOGIN_WINDOW_MINUTES = env_int(
    "CLAUDEMON_LOGIN_WINDOW_MINUTES", 15, minimum=1
)
# URL names, not paths: reversed, they carry the prefix.
LOGIN_URL = "dashboard:login"
LOGIN_REDIRECT_URL = "dashboard:overview"
LOGOUT_REDIRECT_URL = "dashboard:login"


# Access from other machines: both deployments bind CLAUDEMON_BIND (default
# 127.0.0.1). To serve the dashboard to other hosts, set CLAUDEMON_BIND=0.0.0.0
# and name every host users type in CLAUDEMON_ALLOWED_HOSTS (e.g.
# "monitor.lan,192.168.1.20"); ALLOWED_HOSTS and the CSRF origins below follow.
# There is deliberately no CORS configuration: no other origin may call the API
# from a browser (scripts use API tokens, which need no CORS).
def _trusted_origins(hosts: list[str], port: int) -> list[str]:
    """Return http(s) origins for each allowed host, with the data port and without
    (the latter for a reverse proxy on 80/443); ".example.com" means subdomains."""
    origins = []
    for host in hosts:
        if host == "*":  # never trust every origin
            continue
        name = f"*{host}" if host.startswith(".") else host
        for scheme in ("http", "https"):
            origins += [f"{scheme}://{name}:{port}", f"{scheme}://{name}"]
    return origins


CSRF_TRUSTED_ORIGINS = _trusted_origins(CLAUDEMON_ALLOWED_HOSTS, CLAUDEMON_DATA_PORT)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

# `python -m claudemon team` (make team): relays x N behind Caddy on one machine.
CLAUDEMON_FRONT_PORT = env_int("CLAUDEMON_FRONT_PORT", 8000, minimum=1, maximum=65535)
CLAUDEMON_TEAM_RELAYS = env_int("CLAUDEMON_TEAM_RELAYS", 3, minimum=1, maximum=64)
CLAUDEMON_TEAM_RELAY_PORT = env_int(
    "CLAUDEMON_TEAM_RELAY_PORT", 8101, minimum=1, maximum=65535 - 64
)

# Transcript index
# Config roots to index (comma list); when set, replaces the discovery of
# CLAUDE_CONFIG_DIR, ~/.claude and ${XDG_CONFIG_HOME:-~/.config}/claude.
CLAUDEMON_CLAUDE_DIRS = env_list("CLAUDEMON_CLAUDE_DIRS", [])
# A transcript line longer than this is skipped and reported as a bad line: the
# indexer holds a few copies of each line it parses (a 200 MB line peaked at 715 MB).
CLAUDEMON_INDEX_MAX_LINE_MB = env_int("CLAUDEMON_INDEX_MAX_LINE_MB", 32, minimum=1)
