"""`manage.py compact`: rewrite stored request bodies in the shared-block form."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import connection

from apps.proxy import bodies

_REPORT_EVERY = 1000


class Command(BaseCommand):
    help = (
        "Store the request bodies of recorded sessions as blocks shared within each "
        "session (see apps/proxy/bodies.py). Safe beside a running relay (short "
        "transactions); stop it at any time and run it again to go on."
    )

    def handle(self, *args: object, **options: object) -> None:
        before = bodies.body_sizes()
        self.stdout.write(f"Before: {_sizes(before)}")
        converted = reported = 0
        for count in bodies.body_compact():
            converted += count
            if converted - reported >= _REPORT_EVERY:
                self.stdout.write(f"  {converted:,} bodies converted")
                reported = converted
        swept = bodies.bodyblock_sweep_all()
        after = bodies.body_sizes()
        self.stdout.write(f"After:  {_sizes(after)}")
        self.stdout.write(
            f"Converted {converted:,} bodies, removed {swept:,} unlisted blocks, "
            f"{_mb(_total(before) - _total(after))} saved. {_AFTER[connection.vendor]}"
        )


_AFTER = {
    "sqlite": "The file keeps its size: SQLite reuses the freed pages (VACUUM, "
    "with the relay stopped, gives them back to the disk).",
    "postgresql": "The tables keep their size: PostgreSQL reuses the freed space "
    "once (auto)vacuum has passed (VACUUM FULL, which locks them, gives it back).",
}


def _total(sizes: dict[str, int]) -> int:
    return sizes["exchanges"] + sizes["blocks"]


def _sizes(sizes: dict[str, int]) -> str:
    return (
        f"request bodies {_mb(_total(sizes))} ({_mb(sizes['exchanges'])} in "
        f"exchanges, {_mb(sizes['blocks'])} in shared blocks)"
    )


def _mb(size: int) -> str:
    return f"{size / 1e6:,.2f} MB"
