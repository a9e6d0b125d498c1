#!/usr/bin/env python
"""Measure what the relay costs: the fake upstream direct, a bare relay, and core.

All three are measured in the same run on this machine, each target on its own
process pinned to CPU 1 (the fake upstream and this load generator share CPU 0),
so the ratios compare like with like. Prints figures; asserts nothing.

    .venv/bin/python bench/relay.py            # full run, a few minutes
    .venv/bin/python bench/relay.py --quick    # fewer samples
    .venv/bin/python bench/relay.py --routes   # core with a routes file none of
                                               # its calls match, then routed streams
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CLOCK = os.sysconf("SC_CLK_TCK")
BODY = json.dumps(
    {
        "model": "claude-sonnet-4-6",
        "max_tokens": 1024,
        "stream": True,
        "system": [{"type": "text", "text": "You are a benchmark. " * 40}],
        "messages": [{"role": "user", "content": "benchmark prompt " * 60}],
    }
).encode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pinned(cpu: int):
    def apply() -> None:
        if len(os.sched_getaffinity(0)) > 1:
            os.sched_setaffinity(0, {cpu})

    return apply


def start(
    command: list[str], *, env: dict[str, str], cpu: int, port: int
) -> subprocess.Popen:
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=pinned(cpu),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{command} did not listen on {port}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def core_environment(
    work: Path, fake_port: int, openai_port: int | None = None
) -> dict[str, str]:
    """Settings for a core under test, with a migrated database of its own (and,
    given the fake OpenAI server's port, a routes file)."""
    env = {
        "CLAUDEMON_DB_PATH": str(work / "bench.sqlite3"),
        "CLAUDEMON_VAR_DIR": str(work),
        "CLAUDEMON_UPSTREAM_URL": f"http://127.0.0.1:{fake_port}",
        "DJANGO_SETTINGS_MODULE": "claudemon.settings.core",
    }
    if openai_port is not None:
        env["CLAUDEMON_ROUTES_FILE"] = str(routes_file(work, openai_port))
        env["CLAUDE_CONFIG_DIR"] = str(work / "claude")
    subprocess.run(
        [PY, "manage.py", "migrate", "-v", "0"],
        cwd=ROOT,
        check=True,
        env={**os.environ, **env},
    )
    return env


# Rules the bench's own calls (claude-sonnet-4-6, main agent) never match, one of
# each kind that reads something: the model (first key of the body), the subagent
# header and a subagent's name. Routed streams ask for claude-haiku-4-5.
ROUTES = """\
agent_dirs = ["agents"]

[providers.bench]
kind = "openai"
base_url = "http://127.0.0.1:{port}/v1"
free = true

[[routes]]
agent = "code-reviewer"
to = "bench:reviewer"

[[routes]]
main = true
model = "claude-opus-*"
to = "bench:opus-elsewhere"

[[routes]]
model = "claude-haiku-*"
to = "bench:bench-model"
"""


def routes_file(work: Path, openai_port: int) -> Path:
    (work / "agents").mkdir(exist_ok=True)
    (work / "agents" / "code-reviewer.md").write_text(
        "---\nname: code-reviewer\n---\nYou review code.\n"
    )
    path = work / "routes.toml"
    path.write_text(ROUTES.format(port=openai_port))
    return path


def start_fake(port: int) -> subprocess.Popen:
    """The fake upstream, on CPU 0 with the load generator."""
    return start([PY, "-m", "tests.fake_upstream", str(port)], env={}, cpu=0, port=port)


def start_core(port: int, env: dict[str, str]) -> subprocess.Popen:
    """claudemon's relay under daphne, on CPU 1."""
    command = [
        PY,
        "-m",
        "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "claudemon.asgi:application",
    ]
    return start(command, env=env, cpu=1, port=port)


@dataclass
class Stream:
    first: float  # seconds from sending the request to the first event
    total: float
    arrivals: list[float]  # one entry per event


class Connection:
    """A minimal keep-alive HTTP/1.1 client: it measures bytes, not a client library."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def stream(
        self,
        events: int,
        gap_ms: int,
        *,
        path: str = "/v1/messages?beta=true",
        body: bytes = BODY,
        expected: int | None = None,
        headers: str = "",
    ) -> Stream:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                "127.0.0.1", self.port
            )
        head = (
            f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "x-api-key: sk-ant-bench-key\r\nanthropic-version: 2023-06-01\r\n"
            f"x-fake-events: {events}\r\nx-fake-gap-ms: {gap_ms}\r\n{headers}\r\n"
        ).encode()
        started = time.perf_counter()
        self.writer.write(head + body)
        reader = self.reader
        response_head = await reader.readuntil(b"\r\n\r\n")
        assert response_head.startswith(b"HTTP/1.1 200"), response_head[:200]
        arrivals: list[float] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            data = await reader.readexactly(size + 2)
            now = time.perf_counter() - started
            arrivals += [now] * data.count(b"\n\n")
        assert len(arrivals) == (expected or events), (len(arrivals), events)
        return Stream(arrivals[0], arrivals[-1], arrivals)

    def close(self) -> None:
        if self.writer:
            self.writer.close()


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, -(-len(ordered) * p // 100) - 1))]


async def back_to_back(port: int, count: int) -> list[Stream]:
    conn = Connection(port)
    results = [await conn.stream(50, 0) for _ in range(count)]
    conn.close()
    return results


async def after_pause(port: int, count: int) -> list[Stream]:
    conn = Connection(port)
    await conn.stream(50, 0)
    results = []
    for _ in range(count):
        await asyncio.sleep(1)
        results.append(await conn.stream(50, 0))
    conn.close()
    return results


async def throughput(port: int, concurrency: int, seconds: float) -> float:
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        conn = Connection(port)
        while time.perf_counter() < stop_at:
            await conn.stream(50, 0)
            done += 1
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def trickle(port: int, concurrency: int, rounds: int) -> list[Stream]:
    async def worker() -> list[Stream]:
        conn = Connection(port)
        out = [await conn.stream(50, 20) for _ in range(rounds)]
        conn.close()
        return out

    nested = await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [s for group in nested for s in group]


async def memory(port: int, pid: int, total: int) -> list[tuple[int, float]]:
    """RSS of the process at the start and after each tenth of `total` requests."""
    checkpoints: list[tuple[int, float]] = [(0, rss_mb(pid))]
    done = 0
    step = max(1, total // 10)

    async def worker(share: int) -> None:
        nonlocal done
        conn = Connection(port)
        for _ in range(share):
            await conn.stream(10, 0)
            done += 1
            if done % step == 0:
                checkpoints.append((done, rss_mb(pid)))
        conn.close()

    await asyncio.gather(*(worker(total // 16) for _ in range(16)))
    return checkpoints


def gaps(streams: list[Stream]) -> list[float]:
    return [
        b - a
        for s in streams
        for a, b in zip(s.arrivals[1:], s.arrivals[2:], strict=False)
    ]


HEALTH_REQUEST = b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"


def backlog_drained(port: int, timeout: float = 60) -> None:
    """Wait until core has written every recording it holds (its /health says so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.create_connection(("127.0.0.1", port)) as health:
            health.sendall(
                b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
            )
            answer = b"".join(iter(lambda: health.recv(65536), b""))
        if b'"recording_backlog": 0' in answer:
            return
        time.sleep(0.05)
    raise RuntimeError("core's recording backlog did not drain")


def measure(
    name: str, port: int, pid: int | None, quick: bool, recording: bool = False
) -> dict[str, float]:
    n = 60 if quick else 300
    out: dict[str, float] = {}
    runs = asyncio.run(back_to_back(port, n))
    firsts = [s.first * 1000 for s in runs]
    out["ttfe_p50"], out["ttfe_p99"] = pct(firsts, 50), pct(firsts, 99)
    out["total_p50"] = pct([s.total * 1000 for s in runs], 50)
    paused = asyncio.run(after_pause(port, 3 if quick else 8))
    cold = [s.first * 1000 for s in paused]
    out["cold_p50"], out["cold_p99"] = pct(cold, 50), pct(cold, 99)
    out["streams_per_s"] = asyncio.run(throughput(port, 64, 3 if quick else 8))
    # Core's CPU for the trickled streams includes recording them, and only them:
    # the recordings of the throughput run are written first, and the count stops
    # once the trickled streams' own recordings are in the database.
    if recording:
        backlog_drained(port)
    before = cpu_seconds(pid) if pid else 0.0
    slow = asyncio.run(trickle(port, 16, 1 if quick else 3))
    if recording:
        time.sleep(0.3)  # past the recorder's 200 ms batching window
        backlog_drained(port)
    if pid:
        out["cpu_us_per_event"] = (cpu_seconds(pid) - before) / (len(slow) * 50) * 1e6
    # Added delay is measured one stream at a time, so queueing behind other
    # streams on the shared CPU does not count as the relay's delay.
    single = asyncio.run(trickle(port, 1, 3 if quick else 30))
    out["trickle_first_p50"] = pct([s.first * 1000 for s in single], 50)
    out["trickle_gap_p50"] = pct([g * 1000 for g in gaps(single)], 50)
    print(f"  measured {name}", file=sys.stderr, flush=True)
    return out


def routed_body(words: int, gap_ms: int, *, openai: bool) -> bytes:
    """A stream of `words` text chunks from the fake OpenAI server, GAP ms apart:
    asked of it directly (Chat Completions) or through core's route (Messages)."""
    message = {"role": "user", "content": f"bench-stream {words} {gap_ms}"}
    if openai:
        body = {"model": "bench-model", "stream": True, "messages": [message]}
        body["stream_options"] = {"include_usage": True}
    else:
        body = {"model": "claude-haiku-4-5", "max_tokens": 1024, "stream": True}
        body["messages"] = [message]
    return json.dumps(body).encode()


async def routed_streams(
    port: int, *, openai: bool, count: int, gap_ms: int, concurrency: int = 1
) -> list[Stream]:
    words = 50
    # Direct: a role chunk, the words, a finish chunk, usage, [DONE]. Through core:
    # message_start, ping, block start, the words, block stop, message_delta, stop.
    expected = words + (4 if openai else 6)
    path = "/v1/chat/completions" if openai else "/v1/messages?beta=true"
    body = routed_body(words, gap_ms, openai=openai)

    async def worker() -> list[Stream]:
        conn = Connection(port)
        out = [
            await conn.stream(words, gap_ms, path=path, body=body, expected=expected)
            for _ in range(count)
        ]
        conn.close()
        return out

    nested = await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [s for group in nested for s in group]


def measure_routed(
    core_port: int, openai_port: int, core_pid: int, quick: bool
) -> dict[str, float]:
    """First event of a routed stream against the provider's own, and core's CPU
    per provider chunk it converts (recording included)."""
    out: dict[str, float] = {}
    for name, port, openai in (
        ("direct", openai_port, True),
        ("routed", core_port, False),
    ):
        runs = asyncio.run(
            routed_streams(port, openai=openai, count=30 if quick else 200, gap_ms=0)
        )
        out[f"{name}_ttfe_p50"] = pct([s.first * 1000 for s in runs], 50)
        single = asyncio.run(
            routed_streams(port, openai=openai, count=5 if quick else 30, gap_ms=20)
        )
        out[f"{name}_trickle_first_p50"] = pct([s.first * 1000 for s in single], 50)
        out[f"{name}_trickle_gap_p50"] = pct([g * 1000 for g in gaps(single)], 50)
    backlog_drained(core_port)
    before = cpu_seconds(core_pid)
    slow = asyncio.run(
        routed_streams(
            core_port, openai=False, count=1 if quick else 3, gap_ms=20, concurrency=16
        )
    )
    time.sleep(0.3)  # past the recorder's 200 ms batching window
    backlog_drained(core_port)
    out["cpu_us_per_chunk"] = (cpu_seconds(core_pid) - before) / (len(slow) * 50) * 1e6
    print("  measured routed streams", file=sys.stderr, flush=True)
    return out


def report_routed(routed: dict[str, float], core: dict[str, float]) -> None:
    print("\nrouted streams (core converting the fake OpenAI server's chunks), p50:")
    for label, key in [
        ("first event, back to back", "ttfe_p50"),
        ("first event, 20 ms trickle, c=1", "trickle_first_p50"),
        ("gap between events, 20 ms trickle", "trickle_gap_p50"),
    ]:
        direct, through = routed[f"direct_{key}"], routed[f"routed_{key}"]
        print(
            f"  {label:36} provider direct {direct:7.2f} ms   routed {through:7.2f} ms"
            f"   added {through - direct:+7.2f} ms"
        )
    print(
        f"  core CPU per provider chunk, 16 routed streams x 50 chunks 20 ms apart: "
        f"{routed['cpu_us_per_chunk']:.0f} us (unrouted, per relayed event: "
        f"{core['cpu_us_per_event']:.0f} us)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--memory-requests", type=int, default=10_000)
    parser.add_argument(
        "--routes", action="store_true", help="core with a routes file (see ROUTES)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="claudemon-bench-"))
    fake_port, bare_port, core_port = free_port(), free_port(), free_port()
    openai_port = free_port() if args.routes else None
    env = core_environment(work, fake_port, openai_port)
    processes = []
    routed: dict[str, float] = {}
    try:
        fake = start_fake(fake_port)
        processes.append(fake)
        if openai_port is not None:  # the fake OpenAI server, on CPU 0 as well
            command = [PY, "-m", "tests.fake_openai", str(openai_port)]
            processes.append(start(command, env={}, cpu=0, port=openai_port))
        bare = start(
            [
                PY,
                "-m",
                "uvicorn",
                "bench.bare_relay:app",
                "--port",
                str(bare_port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env={"BARE_UPSTREAM": f"http://127.0.0.1:{fake_port}"},
            cpu=1,
            port=bare_port,
        )
        processes.append(bare)
        core = start_core(core_port, env)
        processes.append(core)
        os.sched_setaffinity(0, {0})
        # The machine's speed drifts over minutes (shared host): the three are
        # measured in turn, twice, and each figure is the mean of the two rounds.
        rounds: dict[str, list[dict[str, float]]] = {}
        for _ in range(1 if args.quick else 2):
            for name, port, pid, recording in [
                ("direct", fake_port, None, False),
                ("bare relay", bare_port, bare.pid, False),
                ("claudemon core", core_port, core.pid, True),
            ]:
                rounds.setdefault(name, []).append(
                    measure(name, port, pid, args.quick, recording=recording)
                )
        results = {
            name: {key: statistics.fmean(r[key] for r in runs) for key in runs[0]}
            for name, runs in rounds.items()
        }
        mem = {
            name: asyncio.run(memory(port, pid, args.memory_requests))
            for name, port, pid in [
                ("bare relay", bare_port, bare.pid),
                ("claudemon core", core_port, core.pid),
            ]
        }
        if openai_port is not None:
            routed = measure_routed(core_port, openai_port, core.pid, args.quick)
        backlog_drained(core_port)  # let the recorder catch up before counting
        recorded = subprocess.run(
            [
                PY,
                "-c",
                "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("
                "'select count(*) from proxy_exchange').fetchone()[0])",
                env["CLAUDEMON_DB_PATH"],
            ],
            capture_output=True,
            text=True,
        ).stdout.strip()
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
    report(results, mem, recorded)
    if routed:
        report_routed(routed, results["claudemon core"])


def report(results: dict[str, dict[str, float]], mem: dict, recorded: str) -> None:
    direct, bare, core = (
        results[k] for k in ("direct", "bare relay", "claudemon core")
    )
    rows = [
        ("time to first event p50, back to back (ms)", "ttfe_p50"),
        ("time to first event p99, back to back (ms)", "ttfe_p99"),
        ("time to first event p50, after 1 s pause (ms)", "cold_p50"),
        ("time to first event p99, after 1 s pause (ms)", "cold_p99"),
        ("50-event stream total p50 (ms)", "total_p50"),
        ("streams/s at concurrency 64", "streams_per_s"),
        ("proxy CPU per relayed event, 20 ms trickle (us)", "cpu_us_per_event"),
        ("first event p50, 20 ms trickle, c=1 (ms)", "trickle_first_p50"),
        ("gap between events p50, 20 ms trickle, c=1 (ms)", "trickle_gap_p50"),
    ]
    print(
        f"\n{'':50} {'direct':>9} {'bare':>9} {'core':>9}"
        f" {'core/direct':>12} {'core/bare':>10}"
    )
    for label, key in rows:
        values = [r.get(key) for r in (direct, bare, core)]
        cells = [f"{v:9.2f}" if v is not None else f"{'-':>9}" for v in values]
        ratio_d = (
            f"{core[key] / direct[key]:12.2f}"
            if key in direct and direct[key]
            else f"{'-':>12}"
        )
        ratio_b = f"{core[key] / bare[key]:10.2f}" if bare.get(key) else f"{'-':>10}"
        print(f"{label:50} {' '.join(cells)} {ratio_d} {ratio_b}")
    print("\nadded by the relay (core minus direct; bare minus direct), p50:")
    for label, key in [
        ("time to first event, back to back", "ttfe_p50"),
        ("first event, trickle", "trickle_first_p50"),
        ("gap between events, trickle", "trickle_gap_p50"),
    ]:
        print(
            f"  {label:40} core {core[key] - direct[key]:+7.2f} ms   "
            f"bare {bare[key] - direct[key]:+7.2f} ms   core-bare "
            f"{core[key] - bare[key]:+7.2f} ms"
        )
    print("\nresident memory (MB) at the start and after each tenth of the requests:")
    for name, checkpoints in mem.items():
        print(f"  {name:16} " + " ".join(f"{mb:6.1f}" for _, mb in checkpoints))
    print(f"\nexchanges recorded by core during the run: {recorded}")
    print(
        "\ntargets: core first event <= bare + 2.5 ms; core streams/s >= 45% of bare;"
        " core CPU/event <= 1.6x bare; added first-event and gap delay <= 2 ms p50;"
        " memory flat"
    )
    checks = [
        ("first event", core["ttfe_p50"] - bare["ttfe_p50"] <= 2.5),
        ("throughput", core["streams_per_s"] >= 0.45 * bare["streams_per_s"]),
        ("cpu/event", core["cpu_us_per_event"] <= 1.6 * bare["cpu_us_per_event"]),
        ("gaps", core["trickle_gap_p50"] - direct["trickle_gap_p50"] <= 2.0),
        (
            "first event (trickle)",
            core["trickle_first_p50"] - direct["trickle_first_p50"] <= 2.0,
        ),
    ]
    print(
        "  " + ", ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in checks)
    )


if __name__ == "__main__":
    main()
