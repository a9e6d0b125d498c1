"""Migrations keep the archive: frozen logic, and nothing that deletes indexed data.

Claude Code deletes its transcripts after 30 days; the index is then the user's
only copy, so no migration may delete what it cannot rebuild.
"""

from __future__ import annotations

import ast
import inspect
import re
import struct
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
import zstandard
from django.db import connections
from django.db.migrations import Migration
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import (
    DeleteModel,
    RemoveField,
    RunPython,
    RunSQL,
    SeparateDatabaseAndState,
)
from django.db.migrations.operations.base import Operation

from apps.indexing.rawlines import block_records

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = sorted(ROOT.glob("apps/*/migrations/0*.py"))


def _imported_modules(path: Path) -> list[str]:
    """Return every module a migration imports, import_module() calls included."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", ""))
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.append(node.args[0].value)
    return names


@pytest.mark.parametrize("path", MIGRATIONS, ids=lambda p: f"{p.parts[-3]}/{p.stem}")
def test_it_imports_no_live_project_code_in_a_migration(path: Path) -> None:
    # Another migration is frozen too; anything else of ours may change later.
    live = [
        name
        for name in _imported_modules(path)
        if name.split(".")[0] in ("apps", "claudemon") and ".migrations." not in name
    ]
    assert live == []


@pytest.mark.parametrize(
    ("model", "usage", "at", "cost"),
    [
        # Sonnet 4.5: 3 in, 15 out, 0.30 read, 3.75 5m write, 6 1h write per million.
        ("claude-sonnet-4-5-20250929", [1200, 300, 5000, 1500, 500], "2026-11-20",
         0.018225),
        # Over 200k prompt tokens: the long-context tier (6 in, 22.5 out).
        ("claude-sonnet-4-5", [250_000, 1000, 0, 0, 0], "2026-11-20", 1.5225),
        # Sonnet 5.5's cache reads got cheaper on 2026-10-07.
        ("claude-sonnet-5-5", [0, 0, 1_000_000, 0, 0], "2026-10-06", 0.2),
        ("claude-sonnet-5-5", [0, 0, 1_000_000, 0, 0], "2026-10-07", 0.1),
        ("claude-opus-4-8[1m]", [1_000_000, 0, 0, 0, 0], "2026-11-20", 5.0),
        ("gpt-4o", [1000, 1000, 0, 0, 0], "2026-11-20", None),
    ],
)  # fmt: skip
def test_it_prices_calls_with_the_frozen_table_of_0008(model, usage, at, cost):
    call = import_module("apps.indexing.migrations.0008_call")
    moment = datetime.fromisoformat(at).replace(tzinfo=UTC)
    assert call._cost(call._families(), model, usage, moment) == pytest.approx(cost)


# --- no migration deletes the archive ---------------------------------------------

GUARDED = ("entry", "block", "todo", "plan")
_TABLE = r"[\"'`\[]?(?:main\.)?indexing_(?:entry|block|todo|plan)\b"
_DESTROYS = re.compile(
    rf"\b(?:DELETE\s+FROM|DROP\s+TABLE(?:\s+IF\s+EXISTS)?|TRUNCATE(?:\s+TABLE)?)\s+{_TABLE}"
    rf"|\bALTER\s+TABLE\s+{_TABLE}[\"'`\]]?\s+DROP\b",
    re.IGNORECASE,
)


def _operations(migration: Migration) -> list[Operation]:
    """Return the operations that touch the database (state-only ones cannot)."""
    found = []
    for operation in migration.operations:
        if isinstance(operation, SeparateDatabaseAndState):
            found += operation.database_operations
        else:
            found.append(operation)
    return found


def _python_source(function: Any) -> str:
    """Return a RunPython function's source with the module functions it calls."""
    module, seen, queue, sources = inspect.getmodule(function), set(), [function], []
    while queue:
        current = queue.pop()
        if current in seen:
            continue
        seen.add(current)
        sources.append(inspect.getsource(current))
        for name in current.__code__.co_names:
            called = getattr(module, name, None)
            if inspect.isfunction(called) and inspect.getmodule(called) is module:
                queue.append(called)
    return "\n".join(sources)


def _deletions(migration: Migration) -> list[str]:
    """Return what a migration does that would lose indexed transcripts."""
    problems, carries, python_ran = [], getattr(migration, "carries", {}), False
    for operation in _operations(migration):
        if isinstance(operation, RunSQL):
            statements = (
                operation.sql
                if isinstance(operation.sql, list | tuple)
                else [operation.sql]
            )
            text = "\n".join(s if isinstance(s, str) else s[0] for s in statements)
            problems += [m.group(0) for m in _DESTROYS.finditer(text)]
        elif isinstance(operation, RunPython):
            python_ran = True
            source = _python_source(operation.code)
            problems += [m.group(0) for m in _DESTROYS.finditer(source)]
            problems += ["an ORM .delete()"] if ".delete(" in source else []
        elif isinstance(operation, DeleteModel) and operation.name_lower in GUARDED:
            problems.append(f"DeleteModel {operation.name}")
        elif (
            isinstance(operation, RemoveField) and operation.model_name_lower in GUARDED
        ):
            # A column goes only after a RunPython of this migration moved its data
            # where `carries` says (Migration.carries = {"entry.raw": "block.data"}).
            field = f"{operation.model_name_lower}.{operation.name}"
            if field not in carries or not python_ran:
                problems.append(f"RemoveField {field} (its data not carried)")
    return problems


def _migrations() -> list:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    return [
        pytest.param(migration, id=f"{app}/{name}")
        for (app, name), migration in sorted(loader.disk_migrations.items())
        if app in ("indexing", "dashboard", "proxy")
    ]


@pytest.mark.parametrize("migration", _migrations())
def test_it_deletes_no_indexed_transcript_in_any_migration(migration):
    assert _deletions(migration) == []


@pytest.mark.parametrize(
    ("sql", "destroys"),
    [
        ("DELETE FROM indexing_entry", True),
        ('delete from "indexing_todo" where 1', True),
        ("DROP TABLE IF EXISTS indexing_block", True),
        ("ALTER TABLE indexing_plan DROP COLUMN content", True),
        ("DROP TABLE IF EXISTS indexing_entry_fts", False),  # derived, rebuilt
        ("DELETE FROM indexing_fts_stale", False),
        ("ALTER TABLE indexing_entry ADD COLUMN x int", False),
    ],
)
def test_it_recognises_sql_that_deletes_the_archive(sql, destroys):
    assert bool(_DESTROYS.search(sql)) is destroys


# --- an archive indexed at 0002 survives every later migration ---------------------

LINES = [  # (line, searchable text), stored in each of the 0002-era forms below
    (b'{"type": "user", "message": {"role": "user", "content": "hi"}}', "hi"),
    (
        b'{"type": "assistant", "message": {"id": "m1", "model": "claude-sonnet-4-5",'
        b' "role": "assistant", "content": [{"type": "text", "text": "run alembic '
        b'downgrade to revision 42 now"}], "usage": {"input_tokens": 1000000}},'
        b' "requestId": "r1"}',
        "run alembic downgrade to revision 42 now",
    ),
    (b'{"type": "user", "message": {"role": "user", "content": "' + b"x" * 300
     + b' flamingo"}}', "x" * 300 + " flamingo"),
]  # fmt: skip
_DICTIONARY = b'{"type": "user", "message": {"role": "user", "content": "' * 8


def _stored(line: bytes, form: str) -> bytes:
    """A line (or text) as the 0002-era rawlines stored it: r, z or d + dict id."""
    if form == "r":
        return b"r" + line
    if form == "z":
        return b"z" + zstandard.ZstdCompressor(level=3).compress(line)
    dictionary = zstandard.ZstdCompressionDict(_DICTIONARY)
    framed = zstandard.ZstdCompressor(level=3, dict_data=dictionary).compress(line)
    return b"d" + struct.pack(">I", 1) + framed


@pytest.fixture
def scratch(tmp_path, django_db_blocker):
    """A database file of its own (not the test database), migrated step by step."""
    alias = "scratch"
    connections.settings[alias] = {
        **connections["default"].settings_dict,
        "NAME": str(tmp_path / "archive.sqlite3"),
    }
    with django_db_blocker.unblock():
        yield connections[alias]
        connections[alias].close()
    del connections[alias]
    del connections.settings[alias]


def _migrate(connection, target: str) -> Any:
    executor = MigrationExecutor(connection)
    executor.migrate([("indexing", target)])
    return executor.loader.project_state(("indexing", target)).apps


def _seed_at_0002(models: Any, alias: str) -> None:
    def model(name: str) -> Any:
        return models.get_model("indexing", name).objects.using(alias)

    model("Dictionary").create(id=1, data=_DICTIONARY)
    session = model("Session").create(session_id="s1")
    source = model("SourceFile").create(
        path="/c/projects/p/s1.jsonl", root="/c", kind="transcript", offset=999
    )
    for number, (form, (line, text)) in enumerate(zip("rzd", LINES, strict=True)):
        model("Entry").create(
            source=source, session=session, line_no=number + 1, type="user",
            message_id=f"m{number}", text=text, raw=_stored(line, form),
        )  # fmt: skip
    todo_file = model("SourceFile").create(
        path="/c/todos/t.json", root="/c", kind="todo"
    )
    model("Todo").create(source=todo_file, position=0, content="ship the rollback")
    plan_file = model("SourceFile").create(path="/c/plans/p.md", root="/c", kind="plan")
    model("Plan").create(source=plan_file, slug="p", content="# the plan")


def test_it_carries_an_archive_indexed_at_0002_through_every_migration(scratch):
    _seed_at_0002(_migrate(scratch, "0002_entry_fts"), scratch.alias)
    latest = MigrationLoader(None).graph.leaf_nodes("indexing")[0][1]
    _migrate(scratch, latest)

    with scratch.cursor() as cursor:
        cursor.execute("SELECT block_id, slot FROM indexing_entry ORDER BY line_no")
        places = cursor.fetchall()
        cursor.execute("SELECT id, data FROM indexing_block")
        blocks = {pk: block_records(pk, data) for pk, data in cursor.fetchall()}
        stored = [blocks[block][slot] for block, slot in places]
        assert stored == [(line, text.encode()) for line, text in LINES]
        assert _matches(cursor, '"downgrade" "alembic"') == 1
        cursor.execute("SELECT content FROM indexing_todo UNION ALL "
                       "SELECT content FROM indexing_plan")  # fmt: skip
        assert cursor.fetchall() == [("ship the rollback",), ("# the plan",)]
        cursor.execute('SELECT "offset" FROM indexing_sourcefile WHERE kind = %s',
                       ["transcript"])  # fmt: skip
        assert cursor.fetchall() == [(999,)]  # not rewound to be read again
    # And back past 0010 (the old index, rebuilt) and forward again.
    _migrate(scratch, "0009_call_request_id")
    with scratch.cursor() as cursor:
        assert _matches(cursor, "flamingo") == 1
    _migrate(scratch, latest)
    with scratch.cursor() as cursor:
        assert _matches(cursor, "flamingo") == 1


def _matches(cursor: Any, match: str) -> int:
    cursor.execute(
        "SELECT count(*) FROM indexing_entry_fts WHERE indexing_entry_fts MATCH %s",
        [match],
    )
    return cursor.fetchone()[0]
