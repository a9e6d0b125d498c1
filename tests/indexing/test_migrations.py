"""Migrations keep the archive: frozen logic, and nothing that deletes indexed data.

Claude Code deletes its transcripts after 30 days; the index is then the user's
only copy, so no migration may delete what it cannot rebuild.
"""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path

import pytest

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
