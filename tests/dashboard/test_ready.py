"""The data deployment's /ready: 200 when the database is migrated and the indexer
and rollups beat; 503 naming what is not ready. Public, like /health."""

from __future__ import annotations

import json
import time

import pytest
from django.db.migrations.recorder import MigrationRecorder
from django.test import Client

from apps.dashboard.selectors.readiness import worker_heartbeat_path
from apps.dashboard.services import worker_heartbeat_write

pytestmark = pytest.mark.django_db


@pytest.fixture
def var(settings, tmp_path):
    settings.CLAUDEMON_VAR_DIR = tmp_path
    return tmp_path


def test_it_is_ready_when_migrated_and_both_workers_beat(var):
    for name in ("indexer", "rollups"):
        worker_heartbeat_write(name=name)

    response = Client().get("/ready")

    assert response.status_code == 200
    report = response.json()
    assert (report["status"], report["database"]) == ("ready", "ok")
    assert all(w["alive"] for w in report["workers"].values())
    beat = worker_heartbeat_path(name="indexer")
    assert oct(beat.stat().st_mode & 0o777) == "0o600"


def test_it_is_not_ready_when_a_worker_is_gone_or_silent(var):
    worker_heartbeat_write(name="indexer")
    silent = {"pid": 1, "at": time.time() - 60, "every": 5.0}
    path = worker_heartbeat_path(name="rollups")
    path.write_text(json.dumps(silent))

    report = Client().get("/ready")

    assert report.status_code == 503
    workers = report.json()["workers"]
    assert workers["indexer"]["alive"] is True
    assert workers["rollups"]["alive"] is False
    assert workers["rollups"]["heartbeat_age_s"] >= 60
    path.unlink()
    assert Client().get("/ready").json()["workers"]["rollups"]["alive"] is False


def test_it_is_not_ready_when_migrations_are_missing(var):
    for name in ("indexer", "rollups"):
        worker_heartbeat_write(name=name)
    MigrationRecorder.Migration.objects.filter(app="proxy").order_by("-id")[
        :1
    ].get().delete()

    report = Client().get("/ready")

    assert report.status_code == 503
    assert report.json()["database"].startswith("not migrated: 1 migrations")
