"""Configuration: both deployments check clean; bad values fail at start, clearly."""

from __future__ import annotations

import ast
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import Error, Warning
from django.core.exceptions import ImproperlyConfigured

from apps.proxy.checks import check_database_path, check_upstream_scheme
from claudemon.settings.env import (
    env_bool,
    env_float,
    env_int,
    env_list,
    env_path_prefix,
    env_url,
)

ROOT = Path(__file__).resolve().parent.parent.parent


def run_manage(
    *args: str, settings_module: str, **env: str
) -> subprocess.CompletedProcess:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith("CLAUDEMON_")
    }
    environment.update(DJANGO_SETTINGS_MODULE=settings_module, **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "module", ["claudemon.settings.core", "claudemon.settings.data"]
)
def test_it_passes_manage_py_check_under_both_deployments(module, tmp_path):
    result = run_manage(
        "check",
        "--fail-level",
        "WARNING",
        settings_module=module,
        CLAUDEMON_VAR_DIR=str(tmp_path),
    )

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CLAUDEMON_CORE_PORT", "eighty", "CLAUDEMON_CORE_PORT='eighty' is not valid"),
        ("CLAUDEMON_DATA_PORT", "70000", "CLAUDEMON_DATA_PORT='70000' is not valid"),
        (
            "CLAUDEMON_CONNECT_TIMEOUT",
            "-1",
            "CLAUDEMON_CONNECT_TIMEOUT='-1' is not valid",
        ),
        (
            "CLAUDEMON_IDLE_TIMEOUT",
            "soon",
            "CLAUDEMON_IDLE_TIMEOUT='soon' is not valid",
        ),
        (
            "CLAUDEMON_UPSTREAM_CONNECTIONS",
            "0",
            "CLAUDEMON_UPSTREAM_CONNECTIONS='0' is not valid",
        ),
        ("CLAUDEMON_UPSTREAM_URL", "api.anthropic.com", "CLAUDEMON_UPSTREAM_URL"),
        ("CLAUDEMON_PRICES_FILE", "/nonexistent/prices.json", "is not a readable file"),
        ("CLAUDEMON_DEBUG", "maybe", "CLAUDEMON_DEBUG='maybe' is not valid"),
        ("CLAUDEMON_BIND", "localhost:80", "expected an IP address"),
        ("CLAUDEMON_BIND", "every", "CLAUDEMON_BIND='every' is not valid"),
        ("CLAUDEMON_BACKLOG_SIZE", "0", "CLAUDEMON_BACKLOG_SIZE='0' is not valid"),
        ("CLAUDEMON_RECORD_MAX_BODY", "1MB", "CLAUDEMON_RECORD_MAX_BODY='1MB'"),
        ("CLAUDEMON_RETENTION_DAYS", "-1", "CLAUDEMON_RETENTION_DAYS='-1'"),
        ("CLAUDEMON_RELAY_HOSTS", "http://a.lan", "expected host names"),
        ("CLAUDEMON_RELAY_ORIGINS", "tool.example", "expected origins"),
        ("CLAUDEMON_ALLOWED_HOSTS", "a.lan/x", "CLAUDEMON_ALLOWED_HOSTS='a.lan/x'"),
        ("CLAUDEMON_REDACT_HEADERS", "x token", "expected header names"),
        ("CLAUDEMON_VAR_DIR", "/proc/claudemon", "CLAUDEMON_VAR_DIR='/proc/claudemon'"),
        ("CLAUDEMON_DB_PATH", "/proc/x/db.sqlite3", "CLAUDEMON_DB_PATH="),
        (
            "CLAUDEMON_REDIS_URL",
            "127.0.0.1:6379",
            "CLAUDEMON_REDIS_URL='127.0.0.1:6379'",
        ),
    ],
)
def test_it_refuses_to_start_with_a_bad_value(name, value, message, tmp_path):
    env = {"CLAUDEMON_VAR_DIR": str(tmp_path), name: value}
    result = run_manage("check", settings_module="claudemon.settings.core", **env)

    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one line, naming it


@pytest.mark.parametrize(
    "module", ["claudemon.settings.core", "claudemon.settings.data"]
)
@pytest.mark.parametrize(
    ("redis_url", "backend"),
    [
        ("", "channels.layers.InMemoryChannelLayer"),
        ("redis://127.0.0.1:6390/2", "channels_redis.core.RedisChannelLayer"),
    ],
)
def test_it_takes_the_channel_layer_from_claudemon_redis_url(
    module, redis_url, backend, tmp_path
):
    show = "from django.conf import settings; print(settings.CHANNEL_LAYERS)"
    env = {"CLAUDEMON_VAR_DIR": str(tmp_path), "CLAUDEMON_REDIS_URL": redis_url}
    result = run_manage(
        "shell", "--no-imports", "-c", show, settings_module=module, **env
    )

    assert result.returncode == 0, result.stderr
    layers = ast.literal_eval(result.stdout.strip())
    assert layers["default"]["BACKEND"] == backend
    hosts = layers["default"].get("CONFIG", {}).get("hosts", [{}])
    assert hosts[0].get("address", "") == redis_url


def test_the_launcher_refuses_a_bad_value_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDEMON_")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(CLAUDEMON_VAR_DIR=str(tmp_path), CLAUDEMON_BIND="0.0.0.0:8001")
    result = subprocess.run(
        [sys.executable, "-m", "claudemon"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "claudemon: CLAUDEMON_BIND='0.0.0.0:8001' is not valid: expected an IP "
        "address such as 127.0.0.1, 0.0.0.0 or ::1."
    ]
    assert not (tmp_path / "claudemon.sqlite3").exists()  # nothing started


def test_it_keeps_the_var_folder_and_database_files_to_the_user(tmp_path):
    var = tmp_path / "var"
    var.mkdir()
    var.chmod(0o755)  # as an earlier version left it, whatever the umask
    database = tmp_path / "data" / "db.sqlite3"
    paths = {"CLAUDEMON_VAR_DIR": str(var), "CLAUDEMON_DB_PATH": str(database)}
    migrated = run_manage("migrate", settings_module="claudemon.settings.core", **paths)
    assert migrated.returncode == 0, migrated.stderr
    # A writer holds the WAL open, as the relay does; SQLite creates the -wal and
    # -shm with the database file's own mode.
    writer = sqlite3.connect(database)
    writer.execute("CREATE TABLE t (x)")
    wal, shm = Path(f"{database}-wal"), Path(f"{database}-shm")
    new_files = {path: oct(path.stat().st_mode & 0o777) for path in (database, wal)}
    wal.chmod(0o644)  # as an earlier version left it

    run_manage("check", settings_module="claudemon.settings.core", **paths)
    modes = {path: oct(path.stat().st_mode & 0o777) for path in (var, wal, shm)}
    writer.close()

    assert new_files == {database: "0o600", wal: "0o600"}
    assert modes == {var: "0o700", wal: "0o600", shm: "0o600"}
    assert oct(database.parent.stat().st_mode & 0o777) == "0o700"


def test_it_refuses_a_core_port_equal_to_the_data_port(tmp_path):
    result = run_manage(
        "check",
        settings_module="claudemon.settings.core",
        CLAUDEMON_VAR_DIR=str(tmp_path),
        CLAUDEMON_CORE_PORT="9000",
        CLAUDEMON_DATA_PORT="9000",
    )

    assert "must differ" in result.stderr


@pytest.mark.parametrize(
    ("reader", "raw", "expected"),
    [
        (lambda: env_int("T_X", 5), None, 5),
        (lambda: env_int("T_X", 5), "7", 7),
        (lambda: env_float("T_X", 1.5), "0.25", 0.25),
        (lambda: env_bool("T_X", False), "yes", True),
        (lambda: env_bool("T_X", True), "0", False),
        (lambda: env_list("T_X", ["a"]), "b, ,c", ["b", "c"]),
        (lambda: env_list("T_X", ["a"]), "  ", ["a"]),
        (
            lambda: env_url("T_X", "https://a.example"),
            "http://127.0.0.1:9/p/",
            "http://127.0.0.1:9/p",
        ),
        (lambda: env_path_prefix("T_X", ""), None, ""),
        (lambda: env_path_prefix("T_X", ""), "/claudemon/", "/claudemon"),
        (lambda: env_path_prefix("T_X", ""), "/team/monitor", "/team/monitor"),
        (lambda: env_path_prefix("T_X", ""), "/apis", "/apis"),
    ],
)
def test_it_reads_typed_values(monkeypatch, reader, raw, expected):
    if raw is not None:
        monkeypatch.setenv("T_X", raw)

    assert reader() == expected


@pytest.mark.parametrize(
    ("reader", "raw"),
    [
        (lambda: env_int("T_X", 5), "5.5"),
        (lambda: env_float("T_X", 1.0), "nan"),
        (lambda: env_float("T_X", 1.0), "0"),
        (lambda: env_url("T_X", "https://a.example"), "ftp://x"),
        (lambda: env_url("T_X", "https://a.example"), "https://x/?q=1"),
        # A front door's data prefix may never take Anthropic's or the relay's paths.
        (lambda: env_path_prefix("T_X", ""), "/v1"),
        (lambda: env_path_prefix("T_X", ""), "/V2/x"),
        (lambda: env_path_prefix("T_X", ""), "/api"),
        (lambda: env_path_prefix("T_X", ""), "/api/event_logging"),
        (lambda: env_path_prefix("T_X", ""), "/health"),
        (lambda: env_path_prefix("T_X", ""), "/ready"),
        (lambda: env_path_prefix("T_X", ""), "claudemon"),
        (lambda: env_path_prefix("T_X", ""), "/.."),
        (lambda: env_path_prefix("T_X", ""), "/a b"),
    ],
)
def test_it_fails_loudly_on_bad_values(monkeypatch, reader, raw):
    monkeypatch.setenv("T_X", raw)

    with pytest.raises(ImproperlyConfigured, match="T_X"):
        reader()


def test_check_e001_reports_an_unwritable_database_folder(settings, tmp_path):
    settings.CLAUDEMON_DB_PATH = tmp_path / "missing-folder" / "db.sqlite3"

    [error] = check_database_path(None)

    assert isinstance(error, Error) and error.id == "claudemon.E001"


def test_check_e001_accepts_a_writable_folder(settings, tmp_path):
    settings.CLAUDEMON_DB_PATH = tmp_path / "db.sqlite3"

    assert check_database_path(None) == []


@pytest.mark.parametrize(
    ("url", "warns"),
    [
        ("https://api.anthropic.com", False),
        ("http://127.0.0.1:9999", False),
        ("http://localhost:1", False),
        ("http://gateway.example.com", True),
    ],
)
def test_check_w001_warns_about_plain_http_upstreams(settings, url, warns):
    settings.CLAUDEMON_UPSTREAM_URL = url

    found = check_upstream_scheme(None)

    assert bool(found) == warns
    if warns:
        assert isinstance(found[0], Warning) and found[0].id == "claudemon.W001"
