"""`manage.py ledger --rebuild`: derive the usage ledger from its two sources."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandParser

from apps.dashboard.services import ledger_rebuild
from apps.indexing.models import TranscriptCall
from apps.proxy.models import ApiCall, Exchange


class Command(BaseCommand):
    help = (
        "Enter every finished exchange and every indexed transcript call in the "
        "usage ledger (idempotent: a call is one row however often it is entered). "
        "--if-empty does it only when the ledger is empty and there is something "
        "to enter (the launcher runs this after an upgrade)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rebuild", action="store_true", help="rebuild it")
        parser.add_argument(
            "--if-empty", action="store_true", help="only when the ledger is empty"
        )

    def handle(self, *args: object, **options: object) -> None:
        if not options["rebuild"]:
            self.stdout.write(f"{ApiCall.objects.count()} calls in the ledger.")
            return
        if options["if_empty"] and (ApiCall.objects.exists() or not _has_sources()):
            return
        started = time.monotonic()
        exchanges, sessions = ledger_rebuild()
        self.stdout.write(
            f"Ledger rebuilt from {exchanges} exchanges and {sessions} sessions: "
            f"{ApiCall.objects.count()} calls, {time.monotonic() - started:.1f} s."
        )


def _has_sources() -> bool:
    return Exchange.objects.exists() or TranscriptCall.objects.exists()
