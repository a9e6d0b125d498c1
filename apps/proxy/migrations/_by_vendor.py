"""Migration operations that differ by database engine: SQLite or PostgreSQL.

Frozen like a migration (tests/indexing/test_migrations.py): migrations of every
app import it, and the leading underscore keeps Django's loader from taking it for
a migration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.migrations.operations.base import Operation


class ByVendor(Operation):
    """Database operations of a migration that differ by engine: `sqlite` runs on
    SQLite (FTS5 tables, ALTER TABLE forms that spare a table rebuild), `other` on
    every other database. The model state is left to the surrounding migration
    (SeparateDatabaseAndState's state_operations, or nothing for SQL-only objects)."""

    reduces_to_sql = False

    def __init__(
        self, sqlite: Sequence[Operation] = (), other: Sequence[Operation] = ()
    ) -> None:
        self.sqlite = list(sqlite)
        self.other = list(other)

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return (
            self.__class__.__qualname__,
            [],
            {"sqlite": self.sqlite, "other": self.other},
        )

    @property
    def reversible(self) -> bool:  # type: ignore[override]
        return all(op.reversible for op in self.sqlite + self.other)

    def state_forwards(self, app_label: str, state: Any) -> None:
        """The state is the surrounding migration's business."""

    def _chosen(self, schema_editor: Any) -> list[Operation]:
        vendor = schema_editor.connection.vendor
        return self.sqlite if vendor == "sqlite" else self.other

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        for operation in self._chosen(schema_editor):
            after = from_state.clone()
            operation.state_forwards(app_label, after)
            operation.database_forwards(app_label, schema_editor, from_state, after)
            from_state = after

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        operations = self._chosen(schema_editor)
        if not operations:  # nothing for this engine (zip below needs one or more)
            return
        states = [to_state]
        for operation in operations[:-1]:
            state = states[-1].clone()
            operation.state_forwards(app_label, state)
            states.append(state)
        for operation, before in zip(
            reversed(operations), reversed(states), strict=True
        ):
            after = before.clone()
            operation.state_forwards(app_label, after)
            operation.database_backwards(app_label, schema_editor, after, before)

    def describe(self) -> str:
        return "Database operations chosen by the database engine"


def columns_added(
    sqlite: Sequence[Operation], fields: Sequence[Operation]
) -> Operation:
    """Add fields with `sqlite`'s plain ALTER TABLE ... ADD COLUMN there (Django's
    SQLite editor would copy the whole table for a NOT NULL column with a default,
    and drop the indexes created by RunSQL) and with the AddFields elsewhere."""
    from django.db.migrations import SeparateDatabaseAndState

    return SeparateDatabaseAndState(
        database_operations=[ByVendor(sqlite=sqlite, other=fields)],
        state_operations=list(fields),
    )
