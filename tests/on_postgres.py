"""The suite's second run: every database test again, on PostgreSQL.

`make test` runs this after the SQLite run. A machine without a PostgreSQL server
gets one line saying so and the SQLite run alone; under CI=true a missing server
fails the run (CI machines have one at 127.0.0.1:5432).
"""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg

URL = os.environ.get(
    "CLAUDEMON_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test"
)


def main() -> int:
    try:
        psycopg.connect(URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0]
        line = f"PostgreSQL at {URL} is not reachable ({reason})"
        if os.environ.get("CI") == "true":
            print(f"{line}: CI needs it for the suite's second run.", file=sys.stderr)
            return 1
        print(f"{line}: the suite ran on SQLite only.")
        return 0
    print(f"The database tests again, on PostgreSQL at {URL}:")
    environment = dict(os.environ, CLAUDEMON_DATABASE_URL=URL)
    command = [sys.executable, "-m", "pytest", *sys.argv[1:]]
    return subprocess.call(command, env=environment)


if __name__ == "__main__":
    sys.exit(main())
