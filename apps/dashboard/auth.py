"""Who may use the data deployment: logged-in users, or API tokens for the API.

Three gates, one rule (anonymous gets nothing but /health and the login page):
- pages: LoginRequiredMiddleware (below) redirects anonymous users to /login/;
- API operations: the NinjaAPI's auth list, session (CSRF-checked for unsafe
  methods) or `Authorization: Bearer <token>`; anonymous gets 401 JSON;
- the live feed: apps.dashboard.routing closes anonymous websockets (4401), and
  the feed closes itself (4401) once its session no longer logs in its user.
What a user sees once in: request_viewer (their claimed calls; staff everyone's).
Passwords are checked by ThrottledModelBackend (a lockout after repeated
failures) and must pass Django's password validators (settings/data.py).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from importlib import import_module
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user, get_user_model
from django.contrib.auth import middleware as auth_middleware
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from ninja.errors import HttpError
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf

from apps.dashboard import services
from apps.dashboard.selectors.claims import viewer_of
from apps.dashboard.selectors.logins import login_throttled
from apps.proxy.selectors import Viewer

# Set in a request's META when the login throttle refused it (an extension key,
# as WSGI reserves lower-case dotted names for them).
THROTTLED = "claudemon.login_throttled"

_API_NAMESPACE = "api"
# The API root only raises 404 (ninja's placeholder); treat it like a page.
_API_PAGES = {"api-root"}


class LoginRequiredMiddleware(auth_middleware.LoginRequiredMiddleware):
    """Django's login-required default, except API operations (ninja answers 401)."""

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable,
        view_args: Any,
        view_kwargs: Any,
    ) -> HttpResponseBase | None:
        match = request.resolver_match
        if (
            match is not None
            and _API_NAMESPACE in match.namespaces
            and match.url_name not in _API_PAGES
        ):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class SessionAuth(APIKeyCookie):
    """The Django session; CSRF is checked only once a user is logged in.

    ninja's own SessionAuth checks CSRF first, which would answer an anonymous
    POST with 403 instead of 401.
    """

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request: HttpRequest) -> str | None:
        return request.COOKIES.get(self.param_name)

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        if not getattr(request, "_ninja_csrf_exempt", False) and check_csrf(request):
            raise HttpError(403, "CSRF check failed")
        return user


class BearerTokenAuth(HttpBearer):
    """`Authorization: Bearer cm_...`: a per-user API token (no CSRF: not a cookie)."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = services.apitoken_authenticate(raw=token.strip())
        if user is not None:
            request.user = user
        return user


class ThrottledModelBackend(ModelBackend):
    """Django's ModelBackend, refusing a username or an address after too many
    recent failures (CLAUDEMON_LOGIN_FAILURES in CLAUDEMON_LOGIN_WINDOW_MINUTES).

    Every password check goes through here (the login page, the admin's login),
    and the failures are rows in the shared database, so the count holds across
    processes and restarts. A throttled attempt is refused before the password is
    checked and is not counted: an attacker gets at most the allowance per window.
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        name = username or kwargs.get(get_user_model().USERNAME_FIELD) or ""
        address = request.META.get("REMOTE_ADDR", "") if request else ""
        if login_throttled(username=name, address=address):
            if request is not None:
                request.META[THROTTLED] = True  # for LoginForm's message
            return None
        user = super().authenticate(request, username, password, **kwargs)
        if user is None:
            services.login_failure_record(username=name, address=address)
        else:
            services.login_failures_clear(username=name)
        return user

    async def aauthenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        # ModelBackend's own async path checks the password without the throttle.
        check = sync_to_async(self.authenticate)
        return await check(request, username, password, **kwargs)


class LoginForm(AuthenticationForm):
    """The login form, saying so when the throttle refused the attempt."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Wrong username or password.",
        "throttled": "Too many failed logins for this account or address; "
        "try again later.",
    }

    def clean(self) -> dict:
        try:
            return super().clean()
        except ValidationError:
            if self.request is not None and self.request.META.get(THROTTLED):
                raise ValidationError(
                    self.error_messages["throttled"], code="throttled"
                ) from None
            raise


def session_login_valid(*, session_key: str | None, user: Any) -> bool:
    """Return whether a session still logs in user, as Django would read it now."""
    if not session_key or not getattr(user, "is_authenticated", False):
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    # get_user reads the session's user id and backend, loads the user and checks
    # the session's password hash: logged out, expired or re-passworded is anonymous.
    reading = HttpRequest()
    reading.session = store
    current = get_user(reading)
    return current.is_authenticated and current.pk == user.pk


def request_viewer(request: HttpRequest) -> Viewer:
    """Return whose calls the request's user sees: their own claimed calls, or
    for staff everyone's, one person's when `?user=<username>` names them."""
    return viewer_of(user=request.user, person=request.GET.get("user", "")[:150])


def api_auth() -> list:
    """Return the auth list every API operation accepts (any one suffices)."""
    return [BearerTokenAuth(), SessionAuth()]


def docs_login_required(view: Callable) -> Callable:
    """Guard the OpenAPI schema (401 JSON) and the docs page (login redirect)."""

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated or BearerTokenAuth()(request):
            return view(request, *args, **kwargs)
        if request.path.endswith(".json"):
            return JsonResponse({"detail": "Unauthorized"}, status=401)
        return redirect_to_login(request.get_full_path())

    return guarded
