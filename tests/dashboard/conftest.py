"""Fixtures of the data deployment tests: users, logged-in clients, API tokens."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from apps.dashboard import services

PASSWORD = "correct horse battery staple"


@pytest.fixture
def user(db):
    """The single user of a default deployment: staff (sees every call), without
    admin permissions."""
    return get_user_model().objects.create_user(
        username="alice", password=PASSWORD, is_staff=True
    )


@pytest.fixture
def member(db):
    """A plain active user (not staff): sees only the calls they claimed."""
    return get_user_model().objects.create_user(username="carol", password=PASSWORD)


@pytest.fixture
def member_client(member) -> Client:
    client = Client()
    client.force_login(member)
    return client


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser(
        username="root", email="", password=PASSWORD
    )


@pytest.fixture
def staff(db):
    """Staff with only the view permission on exchanges."""
    from django.contrib.auth.models import Permission

    member = get_user_model().objects.create_user(
        username="bob", password=PASSWORD, is_staff=True
    )
    member.user_permissions.add(Permission.objects.get(codename="view_exchange"))
    return member


@pytest.fixture
def user_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client(superuser) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


@pytest.fixture(params=["ledger", "rollups"])
def api(request, user_client):
    """GET an API path as a logged-in user; return the response.

    Twice per test: reading the ledger alone (every quarter hour dirty), and
    through its rollups, rebuilt before each request as `rollup --watch` would:
    a figure must not depend on which one answers.
    """

    def get(path: str, **params):
        if request.param == "rollups":
            services.rollup_refresh()
        return user_client.get(path, params)

    return get


@pytest.fixture
def token(user) -> str:
    """A raw API token of `user`."""
    return services.apitoken_create(user=user, name="script")[1]
