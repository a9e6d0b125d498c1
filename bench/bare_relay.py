"""Baseline for bench/relay.py: the same bytes relayed by a bare ASGI app.

httpx and nothing else: no Django, no recording, no header rules beyond dropping
hop-by-hop ones. Run under uvicorn:
    BARE_UPSTREAM=http://127.0.0.1:PORT uvicorn bench.bare_relay:app
"""

from __future__ import annotations

import os

import httpx

UPSTREAM = os.environ.get("BARE_UPSTREAM", "http://127.0.0.1:9999")
DROP = {
    b"host",
    b"connection",
    b"keep-alive",
    b"transfer-encoding",
    b"content-length",
    b"te",
    b"trailer",
    b"upgrade",
    b"proxy-authorization",
    b"proxy-authenticate",
}
client = httpx.AsyncClient(
    timeout=httpx.Timeout(10, read=600),
    limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
)


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    url = UPSTREAM + scope["raw_path"].decode("latin-1")
    if scope["query_string"]:
        url += "?" + scope["query_string"].decode("latin-1")
    headers = [(k, v) for k, v in scope["headers"] if k.lower() not in DROP]
    request = client.build_request(scope["method"], url, headers=headers, content=body)
    response = await client.send(request, stream=True)
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": [
                (k, v) for k, v in response.headers.raw if k.lower() not in DROP
            ],
        }
    )
    try:
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    finally:
        await response.aclose()
    await send({"type": "http.response.body", "body": b""})
