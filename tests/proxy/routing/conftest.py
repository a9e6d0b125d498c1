"""Fixtures of the routing tests: request shapes and the strict fake OpenAI server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_openai import FakeOpenAI

REQUESTS = Path(__file__).with_name("requests")


def request_shape(name: str) -> dict[str, Any]:
    """One of the request bodies in requests/ (see its README)."""
    return json.loads((REQUESTS / f"{name}.json").read_text())


@pytest.fixture(scope="session")
def openai_server() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def openai_fake(openai_server: FakeOpenAI) -> FakeOpenAI:
    """The fake OpenAI server with nothing received and nothing scripted."""
    openai_server.reset()
    return openai_server
