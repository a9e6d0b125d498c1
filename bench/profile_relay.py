#!/usr/bin/env python
"""Sample where core spends its CPU while relaying streams (py-spy), and summarise.

    .venv/bin/pip install py-spy && .venv/bin/python bench/profile_relay.py

Runs the fake upstream and core as in bench/relay.py, drives 16 concurrent
50-event streams for a while, samples core with py-spy (all threads, native
frames off) and prints the share of samples by thread and by innermost frame of
our code / Django / daphne+twisted / httpx+httpcore / the recorder (samples
taken only from the thread holding the GIL), then CPU seconds per thread.
"""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.relay import (  # noqa: E402
    PY,
    core_environment,
    free_port,
    start_core,
    start_fake,
    throughput,
)

BUCKETS = [
    (
        "recorder thread: parse, price, write",
        (
            "apps/proxy/writer.py",
            "apps/proxy/recorder.py",
            "apps/proxy/services.py",
            "django/db",
        ),
    ),
    ("relay view (apps/proxy/views.py)", ("apps/proxy/views.py",)),
    ("httpx / httpcore / h11 (upstream side)", ("httpx/", "httpcore/", "h11/")),
    ("daphne / twisted (client side)", ("daphne/", "twisted/", "autobahn/")),
    (
        "django request handling",
        (
            "django/core/handlers",
            "django/http",
            "django/urls",
            "django/dispatch",
            "django/utils",
        ),
    ),
    ("asgiref thread hops", ("asgiref/",)),
    ("asyncio event loop", ("asyncio/",)),
]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="claudemon-profile-"))
    fake_port, core_port = free_port(), free_port()
    env = core_environment(work, fake_port)
    fake = start_fake(fake_port)
    core = start_core(core_port, env)
    raw = work / "profile.txt"
    try:
        spy = subprocess.Popen(
            [
                str(Path(PY).parent / "py-spy"),
                "record",
                "-p",
                str(core.pid),
                "-d",
                "12",
                "-r",
                "250",
                "-f",
                "raw",
                "-o",
                str(raw),
                "--threads",
                "--gil",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        before = thread_cpu(core.pid)
        streams = round(asyncio.run(throughput(core_port, 16, 12)) * 12)
        after = thread_cpu(core.pid)
        spy.wait(60)
    finally:
        for process in (core, fake):
            process.terminate()
            process.wait(10)
    summarise(raw, streams)
    print("\nCPU seconds by thread during the load (from /proc):")
    for name in sorted(after):
        used = after[name] - before.get(name, 0.0)
        print(
            f"  {name:36} {used:6.2f} s  ({used / (streams * 50) * 1e6:6.1f} us/event)"
        )


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per kind of thread: event loop, recorder (nice 10), others."""
    clock = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = collections.defaultdict(float)
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used = (int(fields[11]) + int(fields[12])) / clock
        if int(task.name) == pid:
            name = "event loop (relay, daphne, httpx)"
        elif int(fields[16]) == 10:
            name = "recorder thread"
        else:
            name = "other threads"
        totals[name] += used
    return totals


def summarise(raw: Path, streams: int) -> None:
    totals: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        frames = stack.split(";")
        leaf = frames[-1] if frames else ""
        if any(
            idle in leaf
            for idle in (
                "Condition.wait",
                "_worker (",
                "select (",
                "Event.wait",
                "SimpleQueue.get",
                "Queue.get",
            )
        ):
            continue  # a thread waiting, not working
        threads[frames[0].split(" ")[0] if frames else "?"] += samples
        bucket = next(
            (
                name
                for frame in reversed(frames)
                for name, keys in BUCKETS
                if any(key in frame for key in keys)
            ),
            "other",
        )
        # The recorder thread counts as recorder whatever it calls.
        if any("writer.py" in frame for frame in frames):
            bucket = BUCKETS[0][0]
        totals[bucket] += samples
        leaves[frames[-1].split(" (")[0] if frames else "?"] += samples
    total = sum(totals.values()) or 1
    print(
        f"\n{streams} streams of 50 events relayed during the sample; {total} samples"
    )
    print("\nshare of core's CPU samples:")
    for name, samples in totals.most_common():
        print(f"  {100 * samples / total:5.1f}%  {name}")
    print("\nhottest innermost frames:")
    for name, samples in leaves.most_common(12):
        print(f"  {100 * samples / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
