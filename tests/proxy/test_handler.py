"""The relay's ASGI application, driven with ASGI messages directly.

The relay tests run it under daphne; these pin what the relay relies on in Django's
handler and asgiref: the body joined from its chunks, a client leaving before its
body arrived or while the response streams, and every response closed on one
long-lived thread, never a thread per call.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

from django.core.asgi import get_asgi_application
from django.http import HttpResponse, StreamingHttpResponse
from django.test import override_settings
from django.urls import path

from apps.proxy.handler import relay_application

seen: dict[str, object] = {}


class Closing(HttpResponse):
    def close(self):
        seen["closed_on"] = threading.current_thread()
        super().close()


async def echo_length(request):
    return Closing(str(len(request.body)).encode())


async def slow_stream(request):
    async def chunks():
        try:
            yield b"first"
            await asyncio.Event().wait()  # an upstream that never sends again
            yield b"never"
        except asyncio.CancelledError:
            seen["cancelled"] = True
            raise

    return StreamingHttpResponse(chunks())


urlpatterns = [path("echo", echo_length), path("slow", slow_stream)]

SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/echo",
    "raw_path": b"/echo",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"x")],
    "client": ("127.0.0.1", 5000),
    "server": ("127.0.0.1", 8001),
}


async def call(scope, messages, *, app=None, leave_after_first_body=False):
    """Run the application; return what it sent. `messages` feed receive()."""
    incoming: asyncio.Queue = asyncio.Queue()
    for message in messages:
        incoming.put_nowait(message)
    sent = []

    async def send(message):
        sent.append(message)
        if leave_after_first_body and message["type"] == "http.response.body":
            incoming.put_nowait({"type": "http.disconnect"})

    app = app or relay_application(get_asgi_application())
    handling = asyncio.create_task(app(scope, incoming.get, send))
    done, _ = await asyncio.wait({handling}, timeout=10)
    assert handling in done, "the handler did not finish on its own"
    handling.result()
    return sent


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[])
def test_a_body_in_chunks_reaches_the_view_whole():
    chunks = [b"a" * 8192, b"b" * 8192, b"c" * 100]
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < 2}
        for i, chunk in enumerate(chunks)
    ]

    sent = asyncio.run(call(SCOPE, messages))

    assert sent[0]["status"] == 200
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"16484"


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[])
def test_a_client_that_leaves_before_its_body_arrives_gets_nothing():
    messages = [
        {"type": "http.request", "body": b"part", "more_body": True},
        {"type": "http.disconnect"},
    ]

    assert asyncio.run(call(SCOPE, messages)) == []


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[])
def test_a_client_that_leaves_mid_stream_cancels_the_view():
    seen.clear()
    scope = {**SCOPE, "method": "GET", "path": "/slow", "raw_path": b"/slow"}

    request = [{"type": "http.request", "body": b""}]

    sent = asyncio.run(call(scope, request, leave_after_first_body=True))

    assert [m.get("body") for m in sent[1:]] == [b"first"]
    assert seen.get("cancelled") is True


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[])
def test_every_response_closes_on_one_long_lived_thread_not_one_per_call():
    app = relay_application(get_asgi_application())

    async def scenario():
        threads = []
        for _ in range(3):
            seen.clear()
            sent = await call(SCOPE, [{"type": "http.request", "body": b"x"}], app=app)
            assert sent[0]["status"] == 200
            threads.append(seen["closed_on"])
        return threads, threading.current_thread()

    threads, loop_thread = asyncio.run(scenario())

    assert threads[0] is not loop_thread
    assert threads == [threads[0]] * 3
    assert threads[0].is_alive()  # Django's own per-request executor is shut down


def test_core_leaves_no_request_started_receiver_to_hop_threads_before_relaying():
    probe = (
        "import claudemon.asgi\n"
        "from django.core import signals\n"
        "print(signals.request_started.has_listeners())\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "claudemon.settings.core"}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False"]
