"""API tokens (bearer auth), CSRF on sessions, and the management commands."""

from __future__ import annotations

import hashlib
import io
import stat
from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.urls import path
from ninja import NinjaAPI

from apps.dashboard import services
from apps.dashboard.auth import api_auth
from apps.dashboard.models import ApiToken
from apps.proxy.models import Exchange
from apps.proxy.selectors import EVERYONE
from apps.proxy.services import exchanges
from tests.factories import exchange_create

# A throwaway API with the real auth list and one unsafe operation, to prove
# that session requests need CSRF and token requests do not.
_csrf_api = NinjaAPI(auth=api_auth(), urls_namespace="api")


@_csrf_api.post("/touch")
def _touch(request) -> dict:
    return {"user": request.auth.get_username()}


urlpatterns = [path("api/", _csrf_api.urls)]


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.mark.django_db
def test_it_accepts_a_bearer_token(token):
    response = Client().get("/api/exchanges", **bearer(token))
    assert response.status_code == 200
    assert Client().get("/api/openapi.json", **bearer(token)).status_code == 200
    assert ApiToken.objects.get().last_used_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    ["Bearer cm_wrong", "Bearer ", "Basic YWxpY2U6eA==", "Bearer " + "x" * 5000],
)
def test_it_refuses_bad_tokens(token, header):
    response = Client().get("/api/exchanges", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401


@pytest.mark.django_db
def test_it_refuses_revoked_tokens_and_inactive_users(user, token):
    services.apitoken_revoke(token=ApiToken.objects.get())
    assert Client().get("/api/exchanges", **bearer(token)).status_code == 401
    _, fresh = services.apitoken_create(user=user)
    assert Client().get("/api/exchanges", **bearer(fresh)).status_code == 200
    user.is_active = False
    user.save()
    assert Client().get("/api/exchanges", **bearer(fresh)).status_code == 401


@pytest.mark.django_db
def test_it_stores_only_a_hash(user):
    token, raw = services.apitoken_create(user=user, name="ci")
    stored = ApiToken.objects.get(pk=token.pk)
    assert stored.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in str(ApiToken.objects.values().get())
    assert raw.startswith(stored.prefix) and len(raw) > 40


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__)
def test_it_requires_csrf_for_unsafe_session_requests(user, token):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post("/api/touch").status_code == 403
    client.get("/api/touch")  # any response sets no cookie here; fetch one:
    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

    secret = _get_new_csrf_string()
    client.cookies["csrftoken"] = secret
    response = client.post("/api/touch", HTTP_X_CSRFTOKEN=_mask_cipher_secret(secret))
    assert response.status_code == 200
    assert response.json() == {"user": "alice"}
    # A token needs no CSRF (it is not sent by browsers on their own).
    assert Client(enforce_csrf_checks=True).post(
        "/api/touch", **bearer(token)
    ).json() == {"user": "alice"}
    assert Client(enforce_csrf_checks=True).post("/api/touch").status_code == 401


@pytest.mark.django_db
def test_it_manages_tokens_from_the_command_line(user):
    out = io.StringIO()
    call_command("apitoken", "create", "alice", "--name", "backup", stdout=out)
    raw = out.getvalue().split(": ", 1)[1].split()[0]
    assert Client().get("/api/limits", **bearer(raw)).status_code == 200
    listing = io.StringIO()
    call_command("apitoken", "list", stdout=listing)
    assert "backup" in listing.getvalue() and "active" in listing.getvalue()
    assert raw not in listing.getvalue()
    call_command("apitoken", "revoke", raw[:10], stdout=io.StringIO())
    assert Client().get("/api/limits", **bearer(raw)).status_code == 401
    with pytest.raises(CommandError):
        call_command("apitoken", "create", "nobody")
    with pytest.raises(CommandError):
        call_command("apitoken", "revoke", "cm_nothing")


@pytest.mark.django_db
def test_it_creates_the_first_admin_once(tmp_path):
    out = io.StringIO()
    with override_settings(CLAUDEMON_VAR_DIR=tmp_path):
        call_command("ensure_admin", stdout=out)
        password_file = tmp_path / "admin-password.txt"
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        password = password_file.read_text().split("password: ")[1].strip()
        assert password in out.getvalue()
        admin = get_user_model().objects.get()
        assert admin.username == "admin" and admin.is_superuser
        assert admin.check_password(password)
        again = io.StringIO()
        call_command("ensure_admin", stdout=again)
    assert again.getvalue() == ""
    assert get_user_model().objects.count() == 1
    client = Client()
    assert client.login(username="admin", password=password)
    assert client.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_it_does_nothing_when_users_exist(user, tmp_path):
    out = io.StringIO()
    with override_settings(CLAUDEMON_VAR_DIR=tmp_path):
        call_command("ensure_admin", stdout=out)
    assert out.getvalue() == ""
    assert not (tmp_path / "admin-password.txt").exists()


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.django_db
def test_it_prunes_before_a_date(monkeypatch):
    monkeypatch.setattr(exchanges, "_DELETE_BATCH", 2)  # several batches
    for day in (1, 2, 3, 4, 5, 10):
        exchange_create(started_at=_at(f"2026-11-{day:02d}T12:00:00"))
    out = io.StringIO()
    call_command("prune", "--before", "2026-11-05", stdout=out)
    assert "Deleted 4 exchanges" in out.getvalue()
    left = sorted(Exchange.objects.values_list("started_at", flat=True))
    assert left == [_at("2026-11-05T12:00:00"), _at("2026-11-10T12:00:00")]
    with pytest.raises(CommandError):
        call_command("prune", "--before", "last tuesday")


@pytest.mark.django_db
def test_it_applies_the_retention_setting():
    exchange_create(started_at=_at("2020-01-01T00:00:00"))
    exchange_create(started_at=datetime.now(UTC))
    with override_settings(CLAUDEMON_RETENTION_DAYS=0):
        out = io.StringIO()
        call_command("prune", stdout=out)
        assert "keeping everything" in out.getvalue()
        assert Exchange.objects.count() == 2
    with override_settings(CLAUDEMON_RETENTION_DAYS=30):
        call_command("prune", stdout=io.StringIO())
    assert Exchange.objects.count() == 1


@pytest.mark.django_db
def test_it_guards_the_token_and_model_list_queries(user, django_assert_num_queries):
    from apps.dashboard import selectors

    for index in range(5):
        services.apitoken_create(user=user, name=f"t{index}")
        exchange_create(model=f"claude-test-{index % 2}")
    with django_assert_num_queries(1):
        tokens = selectors.apitoken_list(username="alice")
        assert [str(t.user) for t in tokens] == ["alice"] * 5  # user joined in
    with django_assert_num_queries(1):
        models = selectors.exchange_models(viewer=EVERYONE)
        assert models == ["claude-test-0", "claude-test-1"]
