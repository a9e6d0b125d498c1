"""`manage.py prune [--before DATE]`: delete old exchanges."""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.dashboard import services


class Command(BaseCommand):
    help = (
        "Delete exchanges that started before DATE (ISO 8601; a date alone means "
        "midnight UTC). Without --before, apply CLAUDEMON_RETENTION_DAYS."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--before", default="", help="e.g. 2026-10-01")

    def handle(self, *args: object, **options: object) -> None:
        before = self._cutoff(str(options["before"]))
        if before is None:
            self.stdout.write("CLAUDEMON_RETENTION_DAYS is 0: keeping everything.")
            return
        count = services.exchange_prune(before=before)
        self.stdout.write(
            f"Deleted {count} exchanges started before {before:%Y-%m-%d %H:%M:%S%z}."
        )

    def _cutoff(self, text: str) -> datetime | None:
        if not text:
            days = settings.CLAUDEMON_RETENTION_DAYS
            return timezone.now() - timedelta(days=days) if days else None
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise CommandError(f"--before {text!r} is not an ISO 8601 date.") from None
        if timezone.is_naive(moment):
            moment = moment.replace(tzinfo=UTC)
        return moment
