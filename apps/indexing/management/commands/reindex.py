"""`manage.py reindex`: copy Claude Code's transcripts, todos and plans in."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.dashboard.services import worker_heartbeat_start
from apps.indexing.services import (
    IndexBusy,
    SyncReport,
    index_sync,
    sources_snapshot,
)

PROBLEMS_SHOWN = 50


class Command(BaseCommand):
    help = (
        "Index ~/.claude (or CLAUDEMON_CLAUDE_DIRS): incremental by default; "
        "--full re-reads every file, --watch keeps following changes, --prune drops "
        "the history of source files that no longer exist."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--full",
            action="store_true",
            help="re-read every source file from the start",
        )
        parser.add_argument(
            "--watch",
            action="store_true",
            help="keep indexing changes (polls; idle costs a stat per file)",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=2.0,
            help="seconds between --watch passes (default 2)",
        )
        parser.add_argument(
            "--prune",
            action="store_true",
            help="delete indexed history of vanished source files",
        )
        parser.add_argument(
            "--no-wait",
            action="store_true",
            help="exit at once if another run holds the index lock",
        )
        parser.add_argument(
            "--quiet",
            action="store_true",
            help="only the summary line (and, in --watch, passes "
            "that changed something)",
        )

    def handle(self, *args: object, **options: Any) -> None:
        if options["interval"] <= 0:
            raise CommandError("--interval must be a positive number of seconds.")
        self.quiet = bool(options["quiet"])
        self.tty = self.stdout.isatty() and not self.quiet
        full, watch = bool(options["full"]), bool(options["watch"])
        if watch:
            worker_heartbeat_start(name="indexer")  # read by the data side's /ready
        try:
            while True:
                # Taken before the pass: a change made during it still wakes us.
                seen = sources_snapshot() if watch else None
                self._pass(
                    full=full, prune=bool(options["prune"]), wait=not options["no_wait"]
                )
                if not watch:
                    return
                full = False
                # Idle cost: one directory walk with a stat per file; the database
                # is not touched until something on disk changed.
                while sources_snapshot() == seen:
                    time.sleep(options["interval"])
        except KeyboardInterrupt:  # Ctrl-C ends --watch; each batch is committed
            return

    def _pass(self, *, full: bool, prune: bool, wait: bool) -> SyncReport:
        self._started = time.monotonic()
        try:
            report = index_sync(
                full=full,
                prune=prune,
                wait=wait,
                progress=self._progress if self.tty else None,
                on_wait=self.stderr.write,
            )
        except IndexBusy as exc:
            raise CommandError(f"{exc}; not starting a second run.") from None
        if self.tty:
            self.stdout.write("\r\033[K", ending="")
        for problem in report.problems[:PROBLEMS_SHOWN]:
            self.stderr.write(f"skipped/noted: {problem}")
        hidden = (
            report.bad_lines
            + report.warnings
            - min(PROBLEMS_SHOWN, len(report.problems))
        )
        if hidden > 0:
            self.stderr.write(f"... and {hidden} more problems")
        if not (
            self.quiet and report.files_changed == 0 and getattr(self, "_said", False)
        ):
            self.stdout.write(report.summary_line())
            self._said = True
        return report

    def _progress(self, report: SyncReport) -> None:
        rate = report.entries_added / max(1e-6, time.monotonic() - self._started)
        self.stdout.write(
            f"\r\033[K{report.files_changed} files, {report.entries_added:,} entries, "
            f"{rate:,.0f} entries/s",
            ending="",
        )
        self.stdout.flush()
