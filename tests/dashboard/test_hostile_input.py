"""Hostile or odd input reaching the data deployment: never a 500.

Recorded bodies and transcript lines are shown as placeholders when a page cannot
show them; parameters out of range are 422 on the API and a reported problem on
pages. Real requests through Django's client, real files indexed.
"""

from __future__ import annotations

import json

from apps.indexing.services import index_sync
from apps.proxy.bodies import body_encode
from tests.factories import exchange_create
from tests.indexing.conftest import ClaudeTree

SVG = {"type": "base64", "media_type": "image/svg+xml", "data": "PHN2Zy8+"}
TABS = ("new", "conversation", "response", "request", "headers", "raw")


def _conversation(images: list[dict]) -> list[dict]:
    result = [{"type": "image", "source": image} for image in images]
    return [
        {"role": "user", "content": "draw the logo"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "Read",
             "input": {"file_path": "/logo.svg"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": result}]},
    ]  # fmt: skip


def _exchange(body: dict | bytes):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return exchange_create(request_body=body_encode(data))


def test_it_shows_a_placeholder_naming_an_image_type_it_does_not_show(user_client):
    first = _exchange({"model": "m", "messages": _conversation([SVG])})
    later = _exchange(
        {"model": "m", "messages": [*_conversation([SVG]), {"role": "user",
                                                           "content": "thanks"}]}
    )  # fmt: skip
    for exchange in (first, later):
        for tab in TABS:
            response = user_client.get(f"/requests/{exchange.pk}/?tab={tab}")
            assert response.status_code == 200, tab
            if tab == "conversation":
                assert "image of type &#x27;image/svg+xml&#x27; not shown" in (
                    response.content.decode()
                )


def test_it_shows_the_placeholder_in_the_thread(user_client, tmp_path, settings):
    tree = ClaudeTree(tmp_path / "dot-claude")
    settings.CLAUDEMON_CLAUDE_DIRS = [str(tree.root)]
    t = tree.transcript()
    for message in _conversation([SVG]):
        if message["role"] == "user":
            t.user(message["content"])
        else:
            t.assistant(message["content"], message_id="msg_1", request_id="req_1")
    index_sync()
    response = user_client.get(f"/sessions/{t.session_id}/thread/")
    assert response.status_code == 200
    assert "image/svg+xml" in response.content.decode()


def test_it_shows_a_body_nested_too_deep_as_raw_text(user_client):
    exchange = _exchange(b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    for tab in TABS:
        assert user_client.get(f"/requests/{exchange.pk}/?tab={tab}").status_code == (
            200
        )
