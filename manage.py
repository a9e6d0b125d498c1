#!/usr/bin/env python
"""Django's command-line utility; defaults to the data deployment's settings."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "claudemon.settings.data")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:  # a bad setting: one line, no traceback
        sys.exit(f"claudemon: {exc}")


if __name__ == "__main__":
    main()
