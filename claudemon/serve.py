"""`python -m claudemon.serve <daphne arguments>`: daphne, with an access log that
hides secret query parameters (`?key=...`), as the recording does.

daphne writes each request's target, query string included, to its access log
and offers no hook for it, so the one class it builds that log with is replaced
here, in the processes claudemon starts, and nowhere else.
"""

from __future__ import annotations

import sys
from datetime import datetime

from daphne import cli
from daphne.access import AccessLogGenerator


class AccessLog(AccessLogGenerator):
    def write_entry(
        self, host: str, date: datetime, request: str, *args: object, **kwargs: object
    ) -> None:
        method, space, target = request.partition(" ")
        path, question, query = target.partition("?")
        if question:
            # Imported here: the application (and Django) is loaded by then.
            from apps.proxy.recorder import query_redact

            request = f"{method}{space}{path}?{query_redact(query)}"
        super().write_entry(host, date, request, *args, **kwargs)


if __name__ == "__main__":
    from django.core.exceptions import ImproperlyConfigured

    cli.AccessLogGenerator = AccessLog
    try:
        cli.CommandLineInterface.entrypoint()
    except ImproperlyConfigured as exc:  # a bad setting: one line, no traceback
        sys.exit(f"claudemon: {exc}")
