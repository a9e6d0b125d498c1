"""`manage.py ensure_admin`: create the first admin account if no user exists."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.dashboard import services


class Command(BaseCommand):
    help = (
        "If the database has no user, create superuser 'admin' with a random "
        "password, print it once and write it to var/admin-password.txt (0600)."
    )

    def handle(self, *args: object, **options: object) -> None:
        var_dir = settings.CLAUDEMON_VAR_DIR
        password = services.admin_ensure(var_dir=var_dir)
        if password is None:
            return
        self.stdout.write(
            "\nCreated the first account of the dashboard:\n"
            f"  username: admin\n  password: {password}\n"
            f"(also saved in {var_dir / 'admin-password.txt'}, readable only by you; "
            "change it in the admin under Users, then delete that file)\n"
        )
