"""Nobody gets in who doesn't belong: every URL of the data deployment is walked."""

from __future__ import annotations

import re

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from apps.dashboard import routing

# /health and /ready are public on purpose: states and a timestamp, no recorded
# content. The login page must be reachable to log in at all.
PUBLIC = {"/health", "/ready", "/login/", "/admin/login/"}
_CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")
_SAMPLES = {
    "int": "1",
    "str": "x",
    "slug": "x",
    "uuid": "00000000-0000-0000-0000-000000000001",
    "path": "x/y",
}


def _walk(patterns: list, prefix: str = "") -> list[str]:
    """Return one concrete URL per pattern of a urlconf, path parameters filled."""
    urls = []
    for pattern in patterns:
        route = prefix + _route(pattern)
        if isinstance(pattern, URLResolver):
            urls.extend(_walk(pattern.url_patterns, route))
        elif isinstance(pattern, URLPattern):
            urls.append(route)
    return urls


def _route(pattern: URLPattern | URLResolver) -> str:
    text = str(pattern.pattern)
    if hasattr(pattern.pattern, "_route"):  # path(): fill <type:name>
        return _CONVERTER.sub(lambda m: _SAMPLES.get(m.group(1) or "str", "1"), text)
    # re_path(): admin's (?P<app_label>proxy|auth) and friends
    text = text.lstrip("^").rstrip("$").replace("\\Z", "").replace("\\", "")
    text = re.sub(r"\(\?P<app_label>([^|)]+)[^)]*\)", r"\1", text)
    text = re.sub(r"\(\?P<\w+>[^)]*\)", "1", text)
    return text


def data_urls() -> list[str]:
    return sorted(
        {"/" + url for url in _walk(get_resolver("claudemon.urls_data").url_patterns)}
    )


def _is_api(url: str) -> bool:
    return (
        url.startswith("/api/") and url != "/api/" and not url.startswith("/api/docs")
    )


def test_it_walks_a_meaningful_number_of_urls():
    urls = data_urls()
    wanted = ["/admin/", "/api/exchanges", "/api/stats/summary", "/api/limits",
                "/api/openapi.json", "/api/docs", "/health", "/login/"]  # fmt: skip
    for expected in wanted:
        assert expected in urls
    assert len(urls) > 30


@pytest.mark.django_db
@pytest.mark.parametrize("url", data_urls())
def test_it_refuses_anonymous_on_every_url(url):
    client = Client()
    for method in ("get", "post"):
        response = getattr(client, method)(url)
        if url in PUBLIC:  # /ready is 503 here: no worker runs
            assert response.status_code in (200, 405, 503), (method, url)
        elif _is_api(url) and response.status_code == 405:
            assert method == "post"  # GET-only operation: refused before auth
        elif _is_api(url):
            assert response.status_code == 401, (method, url, response.status_code)
            assert response.json() == {"detail": "Unauthorized"}
        else:
            assert response.status_code == 302, (method, url, response.status_code)
            assert re.match(r"^/(admin/)?login/", response["Location"]), response[
                "Location"
            ]


@pytest.mark.django_db
def test_it_lets_a_user_in_with_a_session(user_client):
    assert user_client.get("/api/exchanges").status_code == 200
    assert user_client.get("/api/openapi.json").status_code == 200
    assert user_client.get("/api/docs").status_code == 200


@pytest.mark.django_db
def test_it_keeps_non_staff_users_out_of_the_admin(member_client):
    response = member_client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert member_client.get("/admin/proxy/exchange/").status_code == 302


@pytest.mark.django_db
def test_it_shows_health_without_login_and_without_content():
    response = Client().get("/health")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "database", "index", "newest_exchange"}
    assert body["database"] == "ok"


@pytest.mark.django_db
def test_it_logs_in_through_the_login_page(user):
    client = Client(enforce_csrf_checks=True)
    page = client.get("/login/")
    assert page.status_code == 200
    csrf = page.cookies["csrftoken"].value
    response = client.post(
        "/login/",
        {"username": "alice", "password": "correct horse battery staple",
         "csrfmiddlewaretoken": csrf, "next": "/api/exchanges"},
    )  # fmt: skip
    assert response.status_code == 302 and response["Location"] == "/api/exchanges"
    assert client.get("/api/exchanges").status_code == 200


@pytest.mark.django_db
def test_it_rejects_a_wrong_password():
    client = Client()
    response = client.post("/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert client.get("/api/exchanges").status_code == 401


def _ws_paths() -> list[str]:
    paths = ["/ws/live/", "/ws/anything/"]
    for pattern in routing.websocket_urlpatterns:
        paths.append("/" + _route(pattern))
    return paths


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", _ws_paths())
def test_it_refuses_anonymous_websockets(path):
    from asgiref.sync import async_to_sync

    async def connect():
        communicator = WebsocketCommunicator(
            routing.websocket_application,
            path,
            headers=[
                (b"origin", b"http://127.0.0.1:8002"),
                (b"host", b"127.0.0.1:8002"),
            ],
        )
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    assert async_to_sync(connect)() == (False, routing.CLOSE_UNAUTHORIZED)
