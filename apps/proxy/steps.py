"""Recording steps (a call's start, its finish) and the rows a batch of them becomes.

Pure: no I/O. The writer thread (apps.proxy.writer) takes steps from its queue or
the spill file, turns them into rows here and writes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from apps.proxy.recorder import Call, call_finish_row, call_start_row


@dataclass(slots=True)
class Finish:
    """The outcome of a call whose start row exists, and how to build it if not."""

    outcome: dict[str, Any]
    start_row: Callable[[], dict[str, Any]]


@dataclass(slots=True)
class Item:
    kind: str  # "start" | "finish"
    call: Call
    size: int = 0  # body bytes this step keeps in memory


@dataclass(slots=True)
class Row:
    """One write (a row to insert or a finish to apply) and the steps it records."""

    items: list[Item]
    insert: dict[str, Any] | None = None
    finish: Finish | None = None


def steps_rows(
    items: list[Item],
    *,
    redact: list[str],
    max_body: int | None = None,
    relay: str = "",
) -> tuple[list[Row], list[tuple[list[Item], str]]]:
    """Build the rows of a batch, and the steps whose row could not be built.

    A call whose start and finish are both in the batch is inserted once, whole;
    a finish whose start was written earlier only updates the outcome fields (the
    request body is neither parsed nor rewritten again) and builds the whole row
    only if that start never landed.
    """
    starts = {item.call.uid: item for item in items if item.kind == "start"}
    finished = {item.call.uid for item in items if item.kind == "finish"}
    rows: list[Row] = []
    failed: list[tuple[list[Item], str]] = []
    for item in items:
        if item.kind == "start" and item.call.uid in finished:
            continue  # inserted whole with its finish
        steps = [item]
        if item.kind == "finish" and item.call.uid in starts:
            steps = [starts[item.call.uid], item]
        try:
            rows.append(_row(steps, redact=redact, max_body=max_body, relay=relay))
        except Exception as exc:  # confined to this call, whatever it is
            failed.append((steps, f"row not built: {type(exc).__name__}: {exc}"))
    return rows, failed


def _row(
    steps: list[Item], *, redact: list[str], max_body: int | None, relay: str
) -> Row:
    call = steps[-1].call
    options: dict[str, Any] = {"redact": redact, "max_body": max_body}
    start = partial(call_start_row, call, relay=relay, **options)
    if steps[-1].kind == "start":
        return Row(steps, insert=start())
    if len(steps) == 2:
        return Row(steps, insert=start() | call_finish_row(call, **options))
    outcome = {"uid": call.uid} | call_finish_row(call, **options)
    return Row(steps, finish=Finish(outcome, start))
