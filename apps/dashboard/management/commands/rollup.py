"""`manage.py rollup [--watch]`: build the stats rollups ahead of any read."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from apps.dashboard.selectors.rollups import rollup_fill
from apps.dashboard.services import worker_heartbeat_start


class Command(BaseCommand):
    help = (
        "Build the stats rollups of every settled hour, so that no dashboard or "
        "API read pays for them; --watch keeps them current (make run does this)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--watch", action="store_true", help="repeat every --interval seconds"
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=60.0,
            help="seconds between --watch passes (default 60)",
        )

    def handle(self, *args: object, **options: object) -> None:
        if options["interval"] <= 0:
            raise CommandError("--interval must be a positive number of seconds.")
        if not options["watch"]:
            started = time.monotonic()
            marked = rollup_fill()
            elapsed = time.monotonic() - started
            self.stdout.write(f"{marked} hours rolled up in {elapsed:.1f} s.")
            return
        worker_heartbeat_start(name="rollups")  # read by the data side's /ready
        try:
            while True:
                self._pass()
                time.sleep(options["interval"])
        except KeyboardInterrupt:  # Ctrl-C ends --watch; every fill is committed
            return

    def _pass(self) -> None:
        # make run stops every process when one exits: a busy database (the
        # relay writing for longer than the busy timeout) must not end this
        # one. Reads fill whatever a failed pass left out.
        try:
            rollup_fill()
        except DatabaseError as error:
            self.stderr.write(f"rollup: pass failed, retrying later: {error}")
