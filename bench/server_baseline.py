#!/usr/bin/env python
"""How much of the relay's added latency is the ASGI server's: the same bare relay
(bench/bare_relay.py) under uvicorn and under daphne, against the fake upstream.

The design fixes daphne as the server; this separates its cost from claudemon's.
Prints time to first event p50 for streams back to back and for streams that
trickle 50 events 20 ms apart (one at a time). Asserts nothing.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.relay import PY, back_to_back, free_port, pct, start, start_fake, trickle  # noqa: E402


def main() -> None:
    fake_port, uvicorn_port, daphne_port = free_port(), free_port(), free_port()
    fake = start_fake(fake_port)
    env = {"BARE_UPSTREAM": f"http://127.0.0.1:{fake_port}"}
    servers = [
        start(
            [
                PY,
                "-m",
                "uvicorn",
                "bench.bare_relay:app",
                "--port",
                str(uvicorn_port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=env,
            cpu=1,
            port=uvicorn_port,
        ),
        start(
            [
                PY,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(daphne_port),
                "bench.bare_relay:app",
            ],
            env=env,
            cpu=1,
            port=daphne_port,
        ),
    ]
    os.sched_setaffinity(0, {0})
    try:
        for name, port in [
            ("direct", fake_port),
            ("bare relay, uvicorn", uvicorn_port),
            ("bare relay, daphne", daphne_port),
        ]:
            slow = asyncio.run(trickle(port, 1, 10))
            fast = asyncio.run(back_to_back(port, 300))
            print(
                f"{name:20} first event p50: back to back "
                f"{pct([s.first * 1000 for s in fast], 50):6.2f} ms, "
                f"trickled {pct([s.first * 1000 for s in slow], 50):6.2f} ms"
            )
    finally:
        for process in [fake, *servers]:
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
