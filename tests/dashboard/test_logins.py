"""Passwords: validated when set, and guessing them is throttled on every login form."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from apps.dashboard.models import LoginFailure
from tests.dashboard.conftest import PASSWORD

pytestmark = pytest.mark.django_db
LOCKED = "Too many failed logins for this account or address"
FAILURES, WINDOW = 3, timedelta(minutes=10)


@pytest.fixture(autouse=True)
def _throttle(settings) -> None:
    settings.CLAUDEMON_LOGIN_FAILURES = FAILURES
    settings.CLAUDEMON_LOGIN_WINDOW_MINUTES = WINDOW.seconds // 60


def _login(client: Client, username: str, password: str, path: str = "/login/"):
    return client.post(path, {"username": username, "password": password})


def test_it_locks_a_username_out_after_repeated_failures(user):
    client = Client()
    for _ in range(FAILURES):
        response = _login(client, "alice", "guess")
        assert response.status_code == 200
        assert "Wrong username or password." in response.content.decode()
    refused = _login(client, "alice", PASSWORD)  # right, but too late
    assert refused.status_code == 200 and LOCKED in refused.content.decode()
    assert client.get("/api/exchanges").status_code == 401
    # From another machine too: the count is the username's, kept in the database.
    other = Client(REMOTE_ADDR="192.0.2.7")
    assert _login(other, "ALICE", PASSWORD).status_code == 200
    assert LoginFailure.objects.filter(username="alice").count() == FAILURES


def test_it_throttles_the_admin_login_as_well(superuser):
    client = Client()
    for _ in range(FAILURES):
        _login(client, "root", "guess", path="/admin/login/")
    assert _login(client, "root", PASSWORD, path="/admin/login/").status_code == 200
    assert client.get("/admin/").status_code == 302  # still not logged in


def test_it_locks_an_address_trying_many_usernames(user):
    client = Client(REMOTE_ADDR="198.51.100.9")
    for n in range(FAILURES * 4):
        _login(client, f"user{n}", "guess")
    assert LOCKED in _login(client, "alice", PASSWORD).content.decode()
    assert _login(Client(), "alice", PASSWORD).status_code == 302  # elsewhere: in


def test_it_lets_the_user_in_once_the_window_has_passed(user):
    client = Client()
    for _ in range(FAILURES):
        _login(client, "alice", "guess")
    for failure in LoginFailure.objects.all():  # as if the window had gone by
        failure.at -= WINDOW + timedelta(seconds=1)
        failure.save(update_fields=["at"])
    assert _login(client, "alice", PASSWORD).status_code == 302
    assert not LoginFailure.objects.exists()


@pytest.mark.parametrize(
    "password", ["short1", "password1234", "12345678901234", "alice-alice-alice"]
)
def test_it_refuses_weak_passwords_when_one_is_set(admin_client, password):
    target = get_user_model().objects.create_user(username="alice-alice-alice")
    response = admin_client.post(
        f"/admin/auth/user/{target.pk}/password/",
        {"password1": password, "password2": password, "usable_password": "true"},
    )
    assert response.status_code == 200  # the form again, with the reason
    target.refresh_from_db()
    assert not target.has_usable_password()
