"""`manage.py rollup [--watch]`: rebuild the ledger's rollups of dirty quarters."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from apps.dashboard.services import rollup_refresh, worker_heartbeat_start


class Command(BaseCommand):
    help = (
        "Rebuild the usage rollups of every quarter hour the ledger marked dirty, "
        "so that reads take them from the rollups; --watch keeps them current "
        "(make run does this). Reads are right either way: a dirty quarter is "
        "read from the ledger itself."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--watch", action="store_true", help="repeat every --interval seconds"
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=5.0,
            help="seconds between --watch passes (default 5)",
        )

    def handle(self, *args: object, **options: Any) -> None:
        if options["interval"] <= 0:
            raise CommandError("--interval must be a positive number of seconds.")
        if not options["watch"]:
            started = time.monotonic()
            rebuilt = rollup_refresh()
            elapsed = time.monotonic() - started
            self.stdout.write(f"{rebuilt} quarter hours rolled up in {elapsed:.1f} s.")
            return
        worker_heartbeat_start(name="rollups")  # read by the data side's /ready
        try:
            while True:
                self._pass()
                time.sleep(options["interval"])
        except KeyboardInterrupt:  # Ctrl-C ends --watch; every pass is committed
            return

    def _pass(self) -> None:
        # A busy database (the relay writing for longer than the busy timeout)
        # must not end the worker: the marks stay and the next pass takes them.
        try:
            rollup_refresh()
        except DatabaseError as error:
            self.stderr.write(f"rollup: pass failed, retrying later: {error}")
