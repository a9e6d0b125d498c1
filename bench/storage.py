"""Stored bytes of request bodies per session, their read time and recording CPU.

    .venv/bin/python bench/storage.py [--calls 50 200] [--seed 1]

Replays realistic Claude Code sessions through the recorder's own path
(recorder.call_start_row, then services.exchange_record in a real SQLite file
with the real migrations), once as today's main stored them (zstd per body) and
once in the new form (blocks shared within a session). A session: system prompt
and tools of 50-80 KB; each call appends the previous answer (thinking with its
signature, text, a tool call) and a tool result of a few KB, sometimes a file
read of 20-60 KB or a new prompt; the last block carries the cache marker that
moves every call; two subagents run interleaved with the main agent for a tenth
of the calls. Prints, per session: raw bytes, new content (the first body of
each agent plus every message appended), stored bytes of each form (payloads,
and the growth of the database file), the recorder's CPU per body, and the p95
time to read one of the last bodies of the session (row fetch + body_decode).
Targets: new form at most 3x the new content; read p95 < 20 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOOL_NAMES = [
    "Bash", "Read", "Edit", "Write", "Glob", "Grep", "Task", "TodoWrite", "WebFetch",
    "WebSearch", "NotebookEdit", "BashOutput", "KillShell", "ExitPlanMode",
    "SlashCommand", "MultiEdit", "LS", "mcp__ide__getDiagnostics",
    "mcp__ide__executeCode", "ListMcpResources",
]  # fmt: skip
READS = 20  # last bodies of the session read, each READ_TIMES times
READ_TIMES = 10


def _dump(value: object) -> bytes:
    """Serialise as Claude Code does (JSON.stringify: no spaces, UTF-8)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class Words:
    """Text of realistic entropy (zstd compresses it about 3x, as real bodies)."""

    def __init__(self, rng: random.Random) -> None:
        letters = "etaoinshrdlcumwfgypbvkjxqz"
        weights = [12, 9, 8, 8, 7, 7, 6, 6, 6, 4, 4, 3, 3] + [2] * 5 + [1] * 8
        self.vocab = [
            "".join(rng.choices(letters, weights, k=rng.randint(2, 10)))
            for _ in range(4000)
        ]
        self.weights = [1 / (rank + 1) for rank in range(len(self.vocab))]  # Zipf
        self.rng = rng

    def text(self, size: int) -> str:
        out, length = [], 0
        while length < size:
            words = self.rng.choices(self.vocab, self.weights, k=12)
            line = " ".join(words) + self.rng.choice([". ", ", ", ".\n", ": "])
            out.append(line)
            length += len(line)
        return "".join(out)[:size]

    def code(self, size: int) -> str:
        rng, out, length = self.rng, [], 0
        forms = ["{i}def {a}({b}):", "{i}{a} = {b}({c})", "{i}return {a}.{b}",
                 "{i}if {a} is not None:", "{i}# {t}", "{i}{a}({c}, {d})"]  # fmt: skip
        while length < size:
            line = rng.choice(forms).format(
                i=" " * (4 * rng.randint(0, 3)),
                a="_".join(rng.choices(self.vocab[:600], k=rng.randint(1, 3))),
                b=rng.choice(self.vocab[:300]),
                c=rng.choice(self.vocab[:900]),
                d=rng.randint(0, 999),
                t=self.text(40).replace("\n", " "),
            )
            out.append(line + "\n")
            length += len(line) + 1
        return "".join(out)[:size]

    def token(self, size: int) -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        return "".join(self.rng.choices(alphabet, k=size))


def _tools(words: Words, budget: int) -> list[dict]:
    rng, tools = words.rng, []
    for name in TOOL_NAMES:
        props = {
            words.vocab[rng.randint(0, 200)]: {
                "type": rng.choice(["string", "number", "boolean"]),
                "description": words.text(rng.randint(40, 200)),
            }
            for _ in range(rng.randint(1, 5))
        }
        schema = {"type": "object", "properties": props, "required": list(props)[:1],
                  "additionalProperties": False,
                  "$schema": "http://json-schema.org/draft-07/schema#"}  # fmt: skip
        description = words.text(max(200, budget // len(TOOL_NAMES) - 400))
        tools.append({"name": name, "description": description, "input_schema": schema})
    return tools


class Agent:
    """One conversation (the main agent or a subagent), growing call by call."""

    def __init__(
        self, words: Words, *, session_id: str, agent_id: str, system: int, tools: list
    ) -> None:
        self.words, self.rng, self.agent_id = words, words.rng, agent_id
        marker = {"type": "ephemeral"}
        user_id = json.dumps({"device_id": words.token(64), "session_id": session_id})
        tail = {
            "system": [
                {"type": "text", "text": "You are Claude Code, Anthropic's official "
                 "CLI for Claude.", "cache_control": marker},
                {"type": "text", "text": words.text(system), "cache_control": marker},
            ],
            "tools": tools, "metadata": {"user_id": user_id}, "max_tokens": 32000,
            "thinking": {"type": "enabled", "budget_tokens": 31999}, "stream": True,
        }  # fmt: skip
        self.head = b'{"model":"claude-sonnet-4-5-20250929","messages":['
        self.tail = b"]," + _dump(tail)[1:]
        self.encoded: list[bytes] = []
        self.pending: list[dict] = [self._prompt(first=True)]
        self.calls = 0
        self.last_tool = ("Read", "")

    def call(self) -> tuple[bytes, int]:
        """Return the next request body and how many of its bytes are new."""
        if self.calls:
            self.pending.append(self._assistant())
            prompt = self.rng.random() < 0.12
            self.pending.append(self._prompt() if prompt else self._result())
        new = 0
        for message in self.pending:
            self.encoded.append(_dump(message))
            new += len(self.encoded[-1]) + 1
        self.pending = []
        self.calls += 1
        last = json.loads(self.encoded[-1])  # the cache marker moves to the end
        last["content"][-1]["cache_control"] = {"type": "ephemeral"}
        body = self.head + b",".join([*self.encoded[:-1], _dump(last)]) + self.tail
        return body, len(body) if self.calls == 1 else new

    def _prompt(self, *, first: bool = False) -> dict:
        words, blocks = self.words, []
        if first:
            reminder = words.text(self.rng.randint(2000, 6000))
            blocks.append({"type": "text", "text": f"<system-reminder>\n{reminder}"})
        blocks.append({"type": "text", "text": words.text(self.rng.randint(80, 800))})
        return {"role": "user", "content": blocks}

    def _assistant(self) -> dict:
        rng, words, blocks = self.rng, self.words, []
        if rng.random() < 0.5:
            thinking = words.text(rng.randint(200, 1500))
            signature = words.token(rng.randint(300, 1200))
            blocks.append(
                {"type": "thinking", "thinking": thinking, "signature": signature}
            )
        if rng.random() < 0.7:
            blocks.append({"type": "text", "text": words.text(rng.randint(60, 600))})
        name = rng.choice(["Read", "Bash", "Edit", "Grep", "Glob", "Read", "Bash"])
        path = f"/repo/{words.vocab[rng.randint(0, 99)]}.py"
        tool_input: dict[str, Any] = {"file_path": path}
        if name == "Edit":
            tool_input["old_string"] = words.code(rng.randint(100, 800))
            tool_input["new_string"] = words.code(rng.randint(100, 900))
        elif name == "Bash":
            tool_input = {"command": words.text(rng.randint(20, 120)),
                          "description": words.text(40)}  # fmt: skip
        self.last_tool = (name, "toolu_" + words.token(24))
        blocks.append({"type": "tool_use", "id": self.last_tool[1], "name": name,
                       "input": tool_input})  # fmt: skip
        return {"role": "assistant", "content": blocks}

    def _result(self) -> dict:
        rng, words = self.rng, self.words
        name, tool_id = self.last_tool
        if name == "Read" and rng.random() < 0.25:
            content = words.code(rng.randint(20_000, 60_000))  # a large file read
        elif name == "Read":
            content = words.code(rng.randint(1_000, 6_000))
        else:
            content = words.text(rng.randint(200, 4_000))
        blocks: list[dict] = [
            {"type": "tool_result", "tool_use_id": tool_id, "content": content}
        ]
        if rng.random() < 0.2:
            reminder = words.text(rng.randint(100, 600))
            blocks.append({"type": "text", "text": f"<system-reminder>\n{reminder}"})
        return {"role": "user", "content": blocks}


def session_calls(*, calls: int, seed: int) -> Iterator[tuple[str, str, bytes, int]]:
    """Yield (session id, agent id, body, new bytes) for each call of a session."""
    rng = random.Random(seed)
    words = Words(rng)
    session_id = str(uuid.UUID(int=rng.getrandbits(128)))
    tools = _tools(words, rng.randint(40_000, 55_000))
    main = Agent(
        words, session_id=session_id, agent_id="", system=rng.randint(12_000, 22_000),
        tools=tools,
    )  # fmt: skip
    subagents: list[Agent] = []
    for made in range(calls):
        if made == calls // 3:  # two subagents run side by side, interleaved
            subagents = [
                Agent(
                    words,
                    session_id=session_id,
                    agent_id=words.token(8),
                    system=rng.randint(4_000, 8_000),
                    tools=tools[:10],
                )
                for _ in range(2)
            ]
        busy = [agent for agent in subagents if agent.calls < calls // 20]
        agent = rng.choice(busy) if busy else main
        body, new = agent.call()
        yield session_id, agent.agent_id, body, new


# --- measuring ---------------------------------------------------------------


def _replay(*, calls: int, seed: int, form: str) -> dict[str, Any]:
    """Record one session in one form into an emptied database; return figures."""
    from django.db import connection

    from apps.proxy import recorder, services
    from apps.proxy.bodies import body_encode, body_sizes
    from apps.proxy.models import BodyBlock, Exchange

    Exchange.objects.all().delete()
    BodyBlock.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM")
    pages_before = _used_bytes()
    if form == "zstd":  # today's main: every body compressed alone
        encode = recorder.body_encode_request
        recorder.body_encode_request = lambda data, session_id: body_encode(data)
    raw = new = 0
    cpu: list[float] = []
    try:
        for session_id, agent_id, body, new_bytes in session_calls(
            calls=calls, seed=seed
        ):
            raw, new = raw + len(body), new + new_bytes
            call = _call(body, session_id=session_id, agent_id=agent_id)
            started = time.thread_time()
            row = recorder.call_start_row(call)
            services.exchange_record(inserts=[row], finishes=[])
            cpu.append(time.thread_time() - started)
    finally:
        if form == "zstd":
            recorder.body_encode_request = encode
    stored = body_sizes()
    return {
        "raw": raw,
        "new": new,
        "payload": stored["exchanges"] + stored["blocks"],
        "file": _used_bytes() - pages_before,
        "cpu_ms": statistics.fmean(cpu) * 1000,
        "read_ms": _read_ms(),
    }


def _call(body: bytes, *, session_id: str, agent_id: str) -> Any:
    from apps.proxy.recorder import Call

    headers = [
        (b"content-type", b"application/json"),
        (b"user-agent", b"claude-cli/2.1.197 (external, cli)"),
        (b"x-claude-code-session-id", session_id.encode()),
    ]
    if agent_id:
        headers.append((b"x-claude-code-agent-id", agent_id.encode()))
    return Call(
        uid=uuid.uuid4(), started_at=datetime.now(UTC), t0=time.perf_counter(),
        method="POST", path="/v1/messages", query="beta=true",
        request_headers=headers, request_body=body,
    )  # fmt: skip


def _used_bytes() -> int:
    """Bytes of the database's pages in use (the file minus its free pages)."""
    from django.db import connection

    with connection.cursor() as cursor:
        sizes = []
        for pragma in ("page_count", "freelist_count", "page_size"):
            cursor.execute(f"PRAGMA {pragma}")
            sizes.append(cursor.fetchone()[0])
    return (sizes[0] - sizes[1]) * sizes[2]


def _read_ms() -> tuple[float, float]:
    """p50 and p95 of reading one of the last bodies: row fetch + body_decode."""
    from apps.proxy.bodies import body_decode
    from apps.proxy.models import Exchange

    ids = list(Exchange.objects.order_by("-pk").values_list("pk", flat=True)[:READS])
    times = []
    for _ in range(READ_TIMES):
        for pk in ids:
            started = time.perf_counter()
            stored = Exchange.objects.values_list("request_body", flat=True).get(pk=pk)
            body_decode(stored)
            times.append(time.perf_counter() - started)
    times.sort()
    rank = [max(0, -(-p * len(times) // 100) - 1) for p in (50, 95)]  # nearest rank
    return times[rank[0]] * 1000, times[rank[1]] * 1000


def _pair(times: tuple[float, float]) -> str:
    return f"{times[0]:.1f}/{times[1]:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    os.environ["CLAUDEMON_DB_PATH"] = str(folder / "bench.sqlite3")
    os.environ["CLAUDEMON_VAR_DIR"] = str(folder)
    os.environ["DJANGO_SETTINGS_MODULE"] = "claudemon.settings.data"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    mb = 1e6
    print(
        f"{'calls':>5} {'raw MB':>8} {'new MB':>7} {'zstd MB':>8} {'blocks MB':>9} "
        f"{'blocks/new':>10} {'zstd/blocks':>11} {'file zstd':>9} {'file blocks':>11} "
        f"{'cpu zstd':>8} {'cpu blocks':>10} {'read zstd p50/p95':>17} "
        f"{'read blocks p50/p95':>19}"
    )
    for calls in args.calls:
        old = _replay(calls=calls, seed=args.seed, form="zstd")
        new = _replay(calls=calls, seed=args.seed, form="blocks")
        print(
            f"{calls:>5} {new['raw'] / mb:>8.1f} {new['new'] / mb:>7.2f} "
            f"{old['payload'] / mb:>8.2f} {new['payload'] / mb:>9.3f} "
            f"{new['payload'] / new['new']:>10.2f} "
            f"{old['payload'] / new['payload']:>11.1f} {old['file'] / mb:>9.2f} "
            f"{new['file'] / mb:>11.3f} {old['cpu_ms']:>6.2f}ms "
            f"{new['cpu_ms']:>8.2f}ms {_pair(old['read_ms']):>17} "
            f"{_pair(new['read_ms']):>19}"
        )
    print("MB = 10^6 bytes; file = growth of the database's used pages;")
    print("cpu = recorder thread CPU per body (row build + write); read = time to")
    print(f"fetch and decode one of the last {READS} bodies, each read {READ_TIMES}x.")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{folder / 'bench.sqlite3'}{suffix}").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
