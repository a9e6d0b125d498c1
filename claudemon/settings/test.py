"""Test settings: the data deployment with a file-backed test database.

The test database must be a real file because the end-to-end tests run the
relay in a separate daphne process that writes into it.
"""

from __future__ import annotations

import os
import tempfile

from claudemon.settings.data import *  # noqa: F403
from claudemon.settings.data import DATABASES

_test_db = os.environ.get("CLAUDEMON_TEST_DB_PATH") or os.path.join(
    tempfile.gettempdir(), f"claudemon-test-{os.getpid()}.sqlite3"
)
DATABASES["default"]["TEST"] = {"NAME": _test_db}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
