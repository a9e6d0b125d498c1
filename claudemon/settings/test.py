"""Test settings: the data deployment with a test database other processes can open.

The end-to-end tests run the relay (and the data side) in separate daphne
processes writing into the same database: on SQLite a real file, on PostgreSQL
(CLAUDEMON_DATABASE_URL set: the suite's second run) a database of this process's
own, so that two runs on one server never meet.
"""

from __future__ import annotations

import os
import tempfile

from claudemon.settings.data import *  # noqa: F403
from claudemon.settings.data import DATABASES

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    _test_db = os.environ.get("CLAUDEMON_TEST_DB_PATH") or os.path.join(
        tempfile.gettempdir(), f"claudemon-test-{os.getpid()}.sqlite3"
    )
else:
    _test_db = f"test_claudemon_{os.getpid()}"
DATABASES["default"]["TEST"] = {"NAME": _test_db}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
